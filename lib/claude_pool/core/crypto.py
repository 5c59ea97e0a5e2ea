"""API keys encrypted at rest: AES-256-GCM under ``ENCRYPTION_KEY``.

Stored form: ``v1.<key id>.<base64url nonce>.<base64url ciphertext+tag>``. The key id (first 8 hex
characters of a SHA-256 of the key) tells which key sealed a value, so rotation can keep the
previous key readable. The account id is the associated data: a value copied onto another row fails
to open. Decryption never falls back to plaintext.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from claude_pool.core.errors import DecryptionError, EncryptionKeyError
from claude_pool.core.settings import Secret, Settings

__all__ = [
    "KeyRing",
    "fingerprint_api_key",
    "generate_key",
    "key_hint",
    "parse_encryption_key",
]

_VERSION = "v1"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_FIX = "generate one with `claude-pool keys generate` (64 hex characters = 32 bytes)"


def generate_key() -> str:
    return os.urandom(32).hex()


def parse_encryption_key(value: str | Secret | None, *, variable: str = "ENCRYPTION_KEY") -> bytes:
    raw = value.reveal() if isinstance(value, Secret) else value
    if raw is None or not raw.strip():
        raise EncryptionKeyError(f"{variable} is not set; {_FIX}")
    raw = raw.strip()
    if not _HEX64.fullmatch(raw):
        problem = f"has {len(raw)} characters" if len(raw) != 64 else "contains characters that are not hex"
        raise EncryptionKeyError(f"{variable} must be exactly 64 hex characters but {problem}; {_FIX}")
    return bytes.fromhex(raw)


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"claude-pool/key-id\x00" + key).hexdigest()[:8]


def _aad(account_id: str) -> bytes:
    return b"claude_accounts:" + account_id.encode()


def fingerprint_api_key(api_key: str) -> str:
    """Stable identity of a key for duplicate detection; the plaintext is never compared or stored.

    API keys carry far more entropy than a brute force can cover, so a domain-separated SHA-256 is
    enough, and it survives encryption-key rotation unchanged.
    """
    return hashlib.sha256(b"claude-pool/api-key-fingerprint\x00" + api_key.encode()).hexdigest()


def key_hint(api_key: str) -> str:
    """What people may see of a key: ``sk-ant-…a1B2``."""
    return f"sk-ant-…{api_key[-4:]}" if api_key.startswith("sk-ant-") else f"…{api_key[-4:]}"


@dataclass(frozen=True)
class _Key:
    key_id: str
    aead: AESGCM


class KeyRing:
    """The current encryption key, and the previous one still readable during a rotation."""

    def __init__(self, current: bytes, previous: bytes | None = None) -> None:
        self._current = _Key(_key_id(current), AESGCM(current))
        self._by_id = {self._current.key_id: self._current}
        if previous is not None and previous != current:
            prev = _Key(_key_id(previous), AESGCM(previous))
            self._by_id[prev.key_id] = prev

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        current = parse_encryption_key(settings.encryption_key)
        previous = (
            parse_encryption_key(settings.encryption_key_previous, variable="ENCRYPTION_KEY_PREVIOUS")
            if settings.encryption_key_previous is not None
            else None
        )
        return cls(current, previous)

    @property
    def current_key_id(self) -> str:
        return self._current.key_id

    def encrypt(self, plaintext: str, *, account_id: str) -> str:
        nonce = os.urandom(12)
        sealed = self._current.aead.encrypt(nonce, plaintext.encode(), _aad(account_id))
        return ".".join((_VERSION, self._current.key_id, _b64(nonce), _b64(sealed)))

    def decrypt(self, stored: str, *, account_id: str) -> str:
        parts = stored.split(".")
        if len(parts) != 4 or parts[0] != _VERSION:
            raise DecryptionError(
                f"account {account_id}: the stored API key is not an encrypted value of format {_VERSION}; "
                "it may have been written by hand or truncated; register the key again"
            )
        _, key_id, nonce_b64, sealed_b64 = parts
        key = self._by_id.get(key_id)
        if key is None:
            raise DecryptionError(
                f"account {account_id}: the API key was encrypted with key id {key_id}, which is neither "
                "ENCRYPTION_KEY nor ENCRYPTION_KEY_PREVIOUS; set the key it was sealed with "
                "(as ENCRYPTION_KEY_PREVIOUS during a rotation)"
            )
        try:
            plaintext = key.aead.decrypt(_unb64(nonce_b64), _unb64(sealed_b64), _aad(account_id))
        except (InvalidTag, ValueError) as exc:
            raise DecryptionError(
                f"account {account_id}: the stored API key failed authentication: it was tampered with "
                "or copied from another account's row; register or rotate the key again"
            ) from exc
        return plaintext.decode()

    def needs_rotation(self, stored: str) -> bool:
        parts = stored.split(".")
        return len(parts) != 4 or parts[1] != self._current.key_id


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
