"""``claude-pool alerts list`` as a user runs it: a real process, real environment, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from claude_pool.accounts.registry import AccountService
from claude_pool.core.config import load_config
from claude_pool.core.crypto import KeyRing
from claude_pool.quota import QuotaEvaluator, QuotaObservation
from claude_pool.storage import Database
from tests.quota.conftest import CANARY_KEY, OTHER_KEY


def _populate(url: str) -> None:
    db = Database(url)
    db.upgrade()
    config = load_config(None, env={})
    service = AccountService(db, KeyRing(os.urandom(32)), config)
    a = service.register({"organization_id": "org-a", "name": "alpha", "tier": "pro", "api_key": CANARY_KEY})
    b = service.register({"organization_id": "org-b", "name": "beta", "tier": "pro", "api_key": OTHER_KEY})
    observations = [
        QuotaObservation(
            x.id, x.organization_id, "requests_per_minute", 970, 1000, "2026-11-26T09:41", x.name
        )
        for x in (a, b)
    ]
    QuotaEvaluator(db, config).evaluate(observations)
    db.dispose()


def _run(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTHROPIC", "ENCRYPTION", "SLACK", "DATABASE", "REDIS", "CLAUDE_POOL"))
    }
    return subprocess.run(
        [sys.executable, "-m", "claude_pool", "alerts", "list", *args],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_alerts_list_filters_by_org_and_unsent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'claude-pool.db'}"
    _populate(url)
    env = {"DATABASE_URL": url, "CLAUDE_POOL_HOME": str(tmp_path), "LOG_FILE": str(tmp_path / "app.log")}
    result = _run(tmp_path, env, "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 4 and {r["account_name"] for r in rows} == {"alpha", "beta"}
    result = _run(tmp_path, env, "--org", "org-a", "--unsent", "--json")
    rows = json.loads(result.stdout)
    assert len(rows) == 2 and {r["organization_id"] for r in rows} == {"org-a"}
    assert all(r["sent_at"] is None and r["send_attempts"] == 0 for r in rows)
    result = _run(tmp_path, env, "--org", "org-b")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["id", "created", "org", "account", "metric"]
    assert len(lines) == 4 and all("beta" in line and "no (0 tries)" in line for line in lines[2:])
    assert "CANARY" not in result.stdout + result.stderr
