"""The set-up guide's walkthrough (docs/SETUP.md), run as written: from nothing to a first delegation
on PostgreSQL and Redis, against the Anthropic and Slack simulators."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- setup-walkthrough -->"
_CLEARED = ("ANTHROPIC", "ENCRYPTION", "SLACK", "DATABASE", "REDIS", "CLAUDE_POOL", "RAILWAY", "LOG_", "VIRTUAL_ENV")


def _walkthrough() -> str:
    guide = (ROOT / "docs" / "SETUP.md").read_text(encoding="utf-8")
    after = guide.split(MARKER, 1)[1]
    block = after.split("```sh\n", 1)[1].split("\n```", 1)[0]
    assert "claude-pool init" in block and "/api/orchestrator/execute" in block
    return block


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_the_guides_walkthrough_reaches_a_first_delegation(
    tmp_path: Path, fresh_postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED)}
    env.update(
        DATABASE_URL=fresh_postgres_url,
        REDIS_URL=redis_url,
        CLAUDE_POOL_REDIS_PREFIX=redis_prefix,
        SIM_PORT=str(_free_port()),
        SLACK_PORT=str(_free_port()),
        API_PORT=str(_free_port()),
    )
    # The harness's own lines: fail on the first failing command, stop the background servers.
    script = "set -eo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n" + _walkthrough()
    process = subprocess.Popen(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.communicate()
    assert process.returncode == 0, out + err
    assert "init complete: claude-pool is ready" in out
    assert "tier pro (from ANTHROPIC_API_KEY_TIER)" in out
    assert "[ok]      redis:" in out and "[ok]      slack:" in out and "postgresql" in out
    answer = json.loads(out.strip().splitlines()[-1])
    assert answer["status"] == "succeeded"
    assert answer["accountName"] in ("default", "second")
    assert answer["usage"]["outputTokens"] > 0
