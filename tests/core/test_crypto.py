"""API keys at rest: AES-256-GCM bound to the row, key ids, rotation, and loud failures."""

from __future__ import annotations

import os

import pytest

from claude_pool.core.crypto import KeyRing, fingerprint_api_key, generate_key, key_hint, parse_encryption_key
from claude_pool.core.errors import DecryptionError, EncryptionKeyError

API_KEY = "sk-ant-api03-CANARY" + "x" * 40 + "a1B2"


def test_generated_keys_are_64_hex_characters_and_differ() -> None:
    a, b = generate_key(), generate_key()
    assert len(a) == 64 and int(a, 16) >= 0 and a != b


@pytest.mark.parametrize("bad", ["", "abc", "z" * 64, "0" * 63, "0" * 65])
def test_a_malformed_encryption_key_is_refused_with_the_fix(bad: str) -> None:
    with pytest.raises(EncryptionKeyError, match="claude-pool keys generate"):
        parse_encryption_key(bad)


def test_round_trip_and_no_plaintext_in_the_stored_value() -> None:
    ring = KeyRing(os.urandom(32))
    stored = ring.encrypt(API_KEY, account_id="acc-1")
    assert "CANARY" not in stored and API_KEY not in stored
    assert ring.decrypt(stored, account_id="acc-1") == API_KEY
    assert ring.encrypt(API_KEY, account_id="acc-1") != stored  # fresh nonce each time


def test_a_value_moved_to_another_row_fails() -> None:
    ring = KeyRing(os.urandom(32))
    stored = ring.encrypt(API_KEY, account_id="acc-1")
    with pytest.raises(DecryptionError, match="tampered with or copied from another account"):
        ring.decrypt(stored, account_id="acc-2")


def test_a_tampered_value_fails() -> None:
    ring = KeyRing(os.urandom(32))
    version, key_id, nonce, sealed = ring.encrypt(API_KEY, account_id="acc-1").split(".")
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(DecryptionError):
        ring.decrypt(".".join((version, key_id, nonce, flipped)), account_id="acc-1")


def test_a_wrong_key_fails_and_names_the_key_id() -> None:
    stored = KeyRing(os.urandom(32)).encrypt(API_KEY, account_id="acc-1")
    with pytest.raises(DecryptionError, match="ENCRYPTION_KEY_PREVIOUS"):
        KeyRing(os.urandom(32)).decrypt(stored, account_id="acc-1")


def test_plaintext_is_never_accepted_as_a_stored_value() -> None:
    with pytest.raises(DecryptionError) as info:
        KeyRing(os.urandom(32)).decrypt(API_KEY, account_id="acc-1")
    assert "CANARY" not in str(info.value)


def test_the_previous_key_stays_readable_during_rotation() -> None:
    old, new = os.urandom(32), os.urandom(32)
    stored = KeyRing(old).encrypt(API_KEY, account_id="acc-1")
    rotating = KeyRing(new, previous=old)
    assert rotating.needs_rotation(stored)
    resealed = rotating.encrypt(rotating.decrypt(stored, account_id="acc-1"), account_id="acc-1")
    assert not rotating.needs_rotation(resealed)
    assert KeyRing(new).decrypt(resealed, account_id="acc-1") == API_KEY


def test_hint_and_fingerprint_reveal_nothing_recognisable() -> None:
    assert key_hint(API_KEY) == "sk-ant-…a1B2"
    fp = fingerprint_api_key(API_KEY)
    assert fp == fingerprint_api_key(API_KEY) and "CANARY" not in fp and len(fp) == 64


def test_log_lines_mask_keys_from_any_source(tmp_path: os.PathLike[str]) -> None:
    import logging
    from pathlib import Path

    from claude_pool.core.logs import configure_logging
    from claude_pool.core.settings import Settings

    log_file = Path(tmp_path) / "app.log"
    configure_logging(Settings(log_file=log_file, home=Path(tmp_path)), console=False)
    logger = logging.getLogger("claude_pool.test")
    logger.info("calling with %s", API_KEY, extra={"api_key": API_KEY})
    try:
        raise RuntimeError(f"upstream said {API_KEY}")
    except RuntimeError:
        logger.exception("account selection failed")
    for handler in logging.getLogger("claude_pool").handlers:
        handler.flush()
    text = log_file.read_text()
    assert "CANARY" not in text
    assert "sk-ant-…a1B2" in text and "account selection failed" in text
