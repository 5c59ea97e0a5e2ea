"""``claude-pool init`` as a new operator meets it: the default account's tier comes from the
environment and is named, and a Railway token is tried with ``railway whoami``.

The ``railway`` executable here is a stand-in placed on PATH (an external tool, not project code):
it accepts one token and refuses any other, as Railway's CLI does."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.cli.test_cli import CANARY, run

GOOD_RAILWAY_TOKEN = "rw-token-GOOD-0f3c9a7e5b1d4c2a8e6f"
FAKE_RAILWAY = f"""#!/bin/sh
if [ "$1" != "whoami" ]; then echo "unexpected command: $*" >&2; exit 2; fi
if [ "$RAILWAY_TOKEN" = "{GOOD_RAILWAY_TOKEN}" ]; then
  echo "Logged in as Ada Lovelace (ada@example.com)"
  exit 0
fi
echo "Unauthorized. Please login with railway login (token $RAILWAY_TOKEN)" >&2
exit 1
"""


@pytest.fixture
def env(encryption_key: str) -> dict[str, str]:
    return {"ENCRYPTION_KEY": encryption_key, "LOG_FILE": ""}


@pytest.fixture
def railway_on_path(tmp_path: Path) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    railway = bin_dir / "railway"
    railway.write_text(FAKE_RAILWAY)
    railway.chmod(railway.stat().st_mode | stat.S_IXUSR)
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def _tiers(tmp_path: Path, env: dict[str, str]) -> list[str]:
    listed = run(tmp_path, "accounts", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    return [account["tier"] for account in json.loads(listed.stdout)]


def test_init_registers_the_default_account_under_the_tier_from_the_environment(
    tmp_path: Path, env: dict[str, str]
) -> None:
    env = {**env, "ANTHROPIC_API_KEY": CANARY, "ANTHROPIC_API_KEY_TIER": "pro"}
    result = run(tmp_path, "init", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tier pro (from ANTHROPIC_API_KEY_TIER)" in result.stdout
    assert _tiers(tmp_path, env) == ["pro"]


def test_init_says_when_it_used_the_default_tier(tmp_path: Path, env: dict[str, str]) -> None:
    env = {**env, "ANTHROPIC_API_KEY": CANARY}
    result = run(tmp_path, "init", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tier free (the default; set ANTHROPIC_API_KEY_TIER to choose)" in result.stdout
    assert _tiers(tmp_path, env) == ["free"]


def test_an_unknown_tier_fails_init_naming_the_variable_and_the_tiers(tmp_path: Path, env: dict[str, str]) -> None:
    env = {**env, "ANTHROPIC_API_KEY": CANARY, "ANTHROPIC_API_KEY_TIER": "platinum"}
    result = run(tmp_path, "init", env=env)
    assert result.returncode == 1
    line = next(line for line in result.stdout.splitlines() if "default account" in line)
    assert line.startswith("[failed]")
    assert "ANTHROPIC_API_KEY_TIER='platinum'" in line
    assert "enterprise, free, pro" in line
    assert _tiers(tmp_path, env) == []


def test_a_tier_that_differs_from_the_registered_one_is_a_warning_with_the_command(
    tmp_path: Path, env: dict[str, str]
) -> None:
    assert run(tmp_path, "init", env={**env, "ANTHROPIC_API_KEY": CANARY}).returncode == 0
    again = run(tmp_path, "init", env={**env, "ANTHROPIC_API_KEY": CANARY, "ANTHROPIC_API_KEY_TIER": "pro"})
    assert again.returncode == 0
    assert "(tier free), not pro as ANTHROPIC_API_KEY_TIER says" in again.stdout
    assert "claude-pool accounts update" in again.stdout and "--tier pro" in again.stdout


def test_the_railway_check_reports_the_account_the_token_belongs_to(
    tmp_path: Path, env: dict[str, str], railway_on_path: str
) -> None:
    result = run(tmp_path, "init", env={**env, "RAILWAY_TOKEN": GOOD_RAILWAY_TOKEN, "PATH": railway_on_path})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ok]      railway: RAILWAY_TOKEN accepted: Logged in as Ada Lovelace (ada@example.com)" in result.stdout
    assert GOOD_RAILWAY_TOKEN not in result.stdout + result.stderr


def test_a_rejected_railway_token_is_explained_without_showing_it(
    tmp_path: Path, env: dict[str, str], railway_on_path: str
) -> None:
    bad = "rw-token-REVOKED-77aa11bb22cc33dd"
    result = run(tmp_path, "init", env={**env, "RAILWAY_TOKEN": bad, "PATH": railway_on_path})
    assert result.returncode == 0  # Railway is optional: init still completes
    line = next(line for line in result.stdout.splitlines() if "railway:" in line)
    assert line.startswith("[warning]")
    assert "Railway refused RAILWAY_TOKEN" in line and "Unauthorized" in line
    assert "set RAILWAY_TOKEN" in line
    assert bad not in result.stdout + result.stderr


def test_a_railway_token_without_the_cli_says_how_to_install_it(tmp_path: Path, env: dict[str, str]) -> None:
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    path = f"{empty_bin}{os.pathsep}{Path(os.__file__).parent}"
    result = run(tmp_path, "init", env={**env, "RAILWAY_TOKEN": GOOD_RAILWAY_TOKEN, "PATH": path})
    assert "railway CLI is not installed -- fix: npm install -g @railway/cli" in result.stdout
