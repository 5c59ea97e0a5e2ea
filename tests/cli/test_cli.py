"""The CLI as a user runs it: a real process, real environment, real files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

CANARY = "sk-ant-api03-CANARYcli7" + "q" * 60 + "T5u6"
SECOND = "sk-ant-api03-SECONDcli8" + "r" * 60 + "V7w8"


def run(cwd: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "ENCRYPTION", "SLACK", "DATABASE", "REDIS", "CLAUDE_POOL"))}
    return subprocess.run(
        [sys.executable, "-m", "claude_pool", *args],
        cwd=cwd, env={**base, **(env or {})}, input=stdin, capture_output=True, text=True, timeout=120,
    )


@pytest.fixture
def env(encryption_key: str) -> dict[str, str]:
    return {"ENCRYPTION_KEY": encryption_key}


def test_keys_generate_prints_64_hex_characters(tmp_path: Path) -> None:
    result = run(tmp_path, "keys", "generate")
    assert result.returncode == 0
    assert re.fullmatch(r"[0-9a-f]{64}\n", result.stdout)


@pytest.mark.parametrize("bad", ["", "1234", "g" * 64])
def test_init_with_a_bad_encryption_key_fails_and_says_how_to_fix_it(tmp_path: Path, bad: str) -> None:
    result = run(tmp_path, "init", env={"ENCRYPTION_KEY": bad})
    assert result.returncode == 1
    assert "[failed]  encryption key" in result.stdout
    assert "claude-pool keys generate" in result.stdout


def test_init_passes_twice_and_registers_the_default_account_once(tmp_path: Path, env: dict[str, str]) -> None:
    env = {**env, "ANTHROPIC_API_KEY": CANARY}
    first = run(tmp_path, "init", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "registered ANTHROPIC_API_KEY as account" in first.stdout
    second = run(tmp_path, "init", env=env)
    assert second.returncode == 0
    assert "already registered" in second.stdout
    listed = run(tmp_path, "accounts", "list", "--json", env=env)
    assert listed.stdout.count('"api_key_hint"') == 1
    for output in (first.stdout, first.stderr, second.stdout, listed.stdout):
        assert "CANARY" not in output


def test_a_canary_key_appears_nowhere_but_as_its_hint(tmp_path: Path, env: dict[str, str]) -> None:
    added = run(tmp_path, "accounts", "add", "--org", "org-a", "--name", "primary", "--tier", "pro", env=env, stdin=CANARY + "\n")
    assert added.returncode == 0, added.stderr
    env_var = {**env, "MY_KEY": SECOND}
    added2 = run(tmp_path, "accounts", "add", "--org", "org-a", "--name", "second", "--tier", "free",
                 "--api-key-env", "MY_KEY", env=env_var)
    assert added2.returncode == 0, added2.stderr
    listed = run(tmp_path, "accounts", "list", env=env)
    shown = run(tmp_path, "accounts", "show", "primary", env=env)
    assert "sk-ant-…T5u6" in listed.stdout and "sk-ant-…V7w8" in listed.stdout
    outputs = [r.stdout + r.stderr for r in (added, added2, listed, shown)]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files) and any(p.name == "app.log" for p in files)
    for blob in outputs + [p.read_bytes().decode("latin-1") for p in files]:
        for key in (CANARY, SECOND):
            assert key not in blob
            assert key[13:-4] not in blob  # no recognisable middle part either


def test_duplicate_empty_name_and_bad_tier_are_clear_errors_and_store_nothing(tmp_path: Path, env: dict[str, str]) -> None:
    assert run(tmp_path, "accounts", "add", "--org", "o", "--name", "a", "--tier", "pro", env=env, stdin=CANARY).returncode == 0
    dup = run(tmp_path, "accounts", "add", "--org", "o", "--name", "b", "--tier", "pro", env=env, stdin=CANARY)
    empty = run(tmp_path, "accounts", "add", "--org", "o", "--name", " ", "--tier", "pro", env=env, stdin=SECOND)
    tier = run(tmp_path, "accounts", "add", "--org", "o", "--name", "c", "--tier", "gold", env=env, stdin=SECOND)
    assert dup.returncode == empty.returncode == tier.returncode == 1
    assert "api_key: this API key is already registered" in dup.stderr
    assert "name: must not be empty" in empty.stderr
    assert "tier: unknown tier 'gold'" in tier.stderr and "enterprise" in tier.stderr
    listed = run(tmp_path, "accounts", "list", "--json", env=env)
    assert listed.stdout.count('"id"') == 1


def test_the_key_is_never_taken_from_an_argument(tmp_path: Path, env: dict[str, str]) -> None:
    result = run(tmp_path, "accounts", "add", "--org", "o", "--name", "a", "--tier", "pro", "--api-key", CANARY, env=env)
    assert result.returncode != 0
    assert "No such option" in result.stderr


def test_disable_enable_rotate_and_remove(tmp_path: Path, env: dict[str, str]) -> None:
    assert run(tmp_path, "accounts", "add", "--org", "o", "--name", "a", "--tier", "pro", env=env, stdin=CANARY).returncode == 0
    assert "disabled" in run(tmp_path, "accounts", "disable", "a", env=env).stdout
    assert '"status": "disabled"' in run(tmp_path, "accounts", "show", "a", env=env).stdout
    assert "enabled" in run(tmp_path, "accounts", "enable", "a", env=env).stdout
    rotated = run(tmp_path, "accounts", "rotate-key", "a", env=env, stdin=SECOND)
    assert "sk-ant-…V7w8" in rotated.stdout
    assert "removed" in run(tmp_path, "accounts", "remove", "a", "--yes", env=env).stdout
    missing = run(tmp_path, "accounts", "show", "a", env=env)
    assert missing.returncode == 1 and "no account 'a'" in missing.stderr


def test_keys_rotate_moves_every_account_to_the_new_key(tmp_path: Path, encryption_key: str) -> None:
    old = {"ENCRYPTION_KEY": encryption_key}
    assert run(tmp_path, "accounts", "add", "--org", "o", "--name", "a", "--tier", "pro", env=old, stdin=CANARY).returncode == 0
    new_key = run(tmp_path, "keys", "generate").stdout.strip()
    # the new key alone cannot read the old rows yet
    before = run(tmp_path, "accounts", "rotate-key", "a", env={"ENCRYPTION_KEY": new_key}, stdin=SECOND)
    assert before.returncode == 0  # rotating an account's key does not need to read the old one
    assert run(tmp_path, "accounts", "add", "--org", "o", "--name", "b", "--tier", "pro", env=old, stdin=CANARY).returncode == 0
    rotated = run(tmp_path, "keys", "rotate", env={"ENCRYPTION_KEY": new_key, "ENCRYPTION_KEY_PREVIOUS": encryption_key})
    assert rotated.returncode == 0, rotated.stderr
    assert "re-encrypted 2 account key(s)" in rotated.stdout
    after_old_only = run(tmp_path, "keys", "rotate", env=old)
    assert after_old_only.returncode == 1 and "ENCRYPTION_KEY_PREVIOUS" in after_old_only.stderr
    assert run(tmp_path, "keys", "rotate", env={"ENCRYPTION_KEY": new_key}).returncode == 0


def test_bad_config_stops_every_command_with_the_json_path(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "multi-account.json").write_text('{"selection": {"strategy": "fastest"}}')
    result = run(tmp_path, "accounts", "list", env=env)
    assert result.returncode == 1
    assert "$.selection.strategy" in result.stderr and "least_loaded" in result.stderr


def test_accounts_list_shows_live_headroom_and_breaker_state(tmp_path: Path, env: dict[str, str]) -> None:
    assert run(tmp_path, "accounts", "add", "--org", "o", "--name", "a", "--tier", "pro", env=env, stdin=CANARY).returncode == 0
    listed = run(tmp_path, "accounts", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    header, _rule, row = listed.stdout.splitlines()[:3]
    assert "headroom" in header and "breaker" in header
    # buckets start empty until upstream's headers calibrate them (capacity.coldStart)
    assert "0% (until calibrated)" in row and "closed" in row
    trusting = run(tmp_path, "accounts", "list", env={**env, "CLAUDE_POOL__capacity__coldStart": "full"})
    assert "100%" in trusting.stdout.splitlines()[2]


def test_executions_list_and_show_without_a_database_browser(tmp_path: Path, env: dict[str, str]) -> None:
    import json

    from claude_pool.pool.models import DelegationRequest
    from claude_pool.records.executions import ExecutionStore
    from claude_pool.storage import Database

    db = Database(f"sqlite:///{tmp_path / '.claude-pool' / 'claude-pool.db'}")
    db.upgrade()
    row, _ = ExecutionStore(db).start(DelegationRequest(organization_id="o", message="hi", user_id="u"))
    ExecutionStore(db).fail(row.id, RuntimeError("upstream broke"))
    db.dispose()
    listed = run(tmp_path, "executions", "list", env=env)
    assert listed.returncode == 0 and row.id in listed.stdout and "failed" in listed.stdout
    shown = json.loads(run(tmp_path, "executions", "show", row.id, env=env).stdout)
    assert shown["status"] == "failed" and shown["request"]["messages"][0]["content"] == "hi"
    missing = run(tmp_path, "executions", "show", "nope", env=env)
    assert missing.returncode == 1 and "no execution 'nope'" in missing.stderr
