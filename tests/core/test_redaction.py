from __future__ import annotations

import pytest

from claude_pool.core.redaction import redact

KEY = "sk-ant-api03-" + "A1b2C3d4" * 10 + "-xyZ9"


def test_masks_a_key_down_to_its_last_four() -> None:
    assert redact(f"bad key {KEY} given") == "bad key sk-ant-…xyZ9 given"


def test_masks_every_key_and_admin_keys() -> None:
    admin = "sk-ant-admin01-" + "q" * 30 + "W7k2"
    text = redact(f"{KEY}, {admin}")
    assert KEY not in text and admin not in text
    assert text == "sk-ant-…xyZ9, sk-ant-…W7k2"


@pytest.mark.parametrize("text", ["", "no secrets here", "sk-ant-short", "the prefix sk-ant- alone"])
def test_leaves_other_text_alone(text: str) -> None:
    assert redact(text) == text


def test_is_idempotent() -> None:
    once = redact(KEY)
    assert redact(once) == once
