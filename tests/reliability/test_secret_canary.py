"""Secret canary: a full run with canary API keys (init and registration by CLI and HTTP,
delegations with successes and every failure class, the flows, capacity sync, a quota sweep to
Slack, the HTTP API and its event stream), then every sink is searched for the keys and for any
12-character piece of their secret part. Found: zero.

Sinks: our database (every table and column but ``claude_accounts.api_key_encrypted``, plus the raw
bytes of the SQLite file), Prefect's database and result storage (every file under its home),
the log file, the console of every process (CLI runs, the run itself and Prefect's server), Slack's
messages, HTTP responses, SSE events, and the text of every exception raised during the run (with
its causes), traced as it was raised."""

from __future__ import annotations

import json
import os
import secrets
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from claude_pool.simulator import FaultRule, RunningSimulator, RunningSlackSimulator, Scenario

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PIECE = 12
ALPHABET = string.ascii_letters + string.digits


def _canary() -> str:
    return "sk-ant-api03-CANARY" + "".join(secrets.choice(ALPHABET) for _ in range(80)) + "AA"


# name -> the fault that its key meets upstream (None: healthy). Round robin reaches each.
FAILURE_CLASSES: dict[str, FaultRule | None] = {
    "canary-init": None,
    "canary-cli-stdin": None,
    "canary-cli-env": None,
    "canary-ok": None,
    "canary-500": FaultRule(kind="error", status=500),
    "canary-503": FaultRule(kind="error", status=503),
    "canary-429": FaultRule(kind="ramp", retry_after=30),
    "canary-401": FaultRule(kind="revoke"),
    "canary-spend-cap": FaultRule(kind="spend_cap"),
    "canary-529": FaultRule(kind="overloaded"),
    "canary-timeout": FaultRule(kind="timeout", hang_s=3),
    "canary-reset": FaultRule(kind="reset"),
}


def _pieces(keys: list[str]) -> set[str]:
    """Every 12-character piece of each key's secret part (after ``sk-ant-api03-``)."""
    found = set()
    for key in keys:
        secret = key.removeprefix("sk-ant-api03-")
        found.update(secret[i : i + PIECE] for i in range(len(secret) - PIECE + 1))
    return found


def _leaks(text: str, keys: list[str], pieces: set[str]) -> list[str]:
    hits = [k[:24] + "..." for k in keys if k in text]
    if not hits:
        # a piece starts at any offset: scan windows of the text against the set (fast for MBs)
        hits = [text[i : i + PIECE] for i in range(len(text) - PIECE + 1) if text[i : i + PIECE] in pieces][
            :3
        ]
    return hits


def _cli(args: list[str], env: dict[str, str], cwd: Path, stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "claude_pool", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.fixture
def simulators(
    anthropic_sim_factory: Any, slack_sim_factory: Any
) -> Iterator[tuple[RunningSimulator, RunningSlackSimulator]]:
    sim: RunningSimulator = anthropic_sim_factory(
        Scenario.uniform(accounts=2, rpm=100_000, itpm=100_000_000, otpm=10_000_000, round_tokens_to=1)
    )
    slack: RunningSlackSimulator = slack_sim_factory(rate_per_channel=100, burst=100)
    yield sim, slack


def test_no_canary_key_or_any_12_character_piece_of_it_reaches_any_sink(
    tmp_path: Path, simulators: tuple[RunningSimulator, RunningSlackSimulator], encryption_key: str
) -> None:
    sim, slack = simulators
    keys = {name: _canary() for name in FAILURE_CLASSES}
    org = sim.orgs[0].id
    for name, key in keys.items():
        sim.add_key(name, org, key=key)
    sim.set_faults(
        [
            rule.__class__(**{**rule.to_dict(), "targets": (name,)})
            for name, rule in FAILURE_CLASSES.items()
            if rule
        ]
    )
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    prefect_home = tmp_path / "prefect-home"
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(
                ("ANTHROPIC", "ENCRYPTION", "SLACK", "DATABASE", "REDIS", "CLAUDE_POOL", "PREFECT")
            )
        },
        "CLAUDE_POOL_HOME": str(home),
        "CLAUDE_POOL_CONFIG": str(tmp_path / "no-config.json"),
        "ENCRYPTION_KEY": encryption_key,
        "ANTHROPIC_BASE_URL": sim.base_url,
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_BASE_URL": slack.base_url,
        "LOG_FILE": str(tmp_path / "logs" / "app.log"),
        "LOG_LEVEL": "DEBUG",  # the most a log can say
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "DEBUG",
        "PREFECT_LOGGING_TO_API_ENABLED": "true",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
    consoles = []
    # 1. init registers ANTHROPIC_API_KEY; the CLI registers two more (stdin, --api-key-env)
    consoles.append(_cli(["init"], {**env, "ANTHROPIC_API_KEY": keys["canary-init"]}, work))
    consoles.append(
        _cli(
            ["accounts", "add", "--org", "tenant-a", "--name", "canary-cli-stdin", "--tier", "pro"],
            env,
            work,
            stdin=keys["canary-cli-stdin"] + "\n",
        )
    )
    consoles.append(
        _cli(
            [
                "accounts",
                "add",
                "--org",
                "tenant-a",
                "--name",
                "canary-cli-env",
                "--tier",
                "pro",
                "--api-key-env",
                "THE_KEY",
            ],
            {**env, "THE_KEY": keys["canary-cli-env"]},
            work,
        )
    )
    consoles.append(_cli(["accounts", "list", "--json"], env, work))
    # 2. everything else in one run of its own (HTTP, SSE, library, flows), exceptions traced
    out_path = tmp_path / "run.json"
    run = subprocess.run(
        [sys.executable, "-m", "tests.reliability._canary_run"],
        cwd=ROOT,
        env={
            **env,
            "CANARY_KEYS_JSON": json.dumps({k: v for k, v in keys.items()}),
            "CANARY_OUT": str(out_path),
        },
        capture_output=True,
        text=True,
        timeout=400,
    )
    consoles.append(run.stdout + run.stderr)
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    consoles.append(_cli(["executions", "list"], env, work))
    consoles.append(_cli(["alerts", "list"], env, work))
    result: dict[str, Any] = json.loads(out_path.read_text())

    # the run did what it was meant to: each failure class met, alerts sent, events streamed
    stats = sim.stats()
    met = {name: stats.key(name)["received"] for name in keys}
    assert all(n >= 1 for n in met.values()), met
    assert stats.total["served"] >= 60 and stats.total["rejected_invalid"] >= 1
    channels = sorted({m.channel_ref for m in slack.messages})
    assert slack.messages_in("#eng-alerts") and slack.messages_in("#it-test"), (slack.stats(), channels)
    assert result["sse"] and result["exception_count"] > 100, result.get("exception_count")

    key_list = list(keys.values())
    pieces = _pieces(key_list)
    sinks = _sinks(tmp_path, home, out_path, consoles, result, slack)
    leaks = {where: hits for where, text in sinks.items() if (hits := _leaks(text, key_list, pieces))}
    print(
        f"\n[canary] {len(keys)} canary keys, {len(sinks)} sinks scanned "
        f"({sum(len(t) for t in sinks.values()) / 1e6:.1f} MB), {len(result['exceptions'])} exception texts "
        f"({result['exception_count']} exceptions; {result['control_flow_count']} StopIteration/"
        f"GeneratorExit returns not counted), {len(result['sse'])} SSE lines, "
        f"{len(slack.messages)} Slack messages in {channels}; leaks: {len(leaks)}"
    )
    assert leaks == {}, [f"{where}: {_masked(sinks[where], key_list)[:300]}" for where in list(leaks)[:8]]


def _sinks(
    tmp_path: Path,
    home: Path,
    out_path: Path,
    consoles: list[str],
    result: dict[str, Any],
    slack: RunningSlackSimulator,
) -> dict[str, str]:
    """Every place the run wrote to or answered with, by name."""
    sinks: dict[str, str] = {}
    for kind, texts in (
        ("console", consoles),
        ("http response", result["http"]),
        ("sse event", result["sse"]),
        ("exception", result["exceptions"]),
        ("result", result["library"] + result["flows"]),
    ):
        for n, text in enumerate(texts):
            sinks[f"{kind} {n}"] = text
    for n, message in enumerate(slack.messages):
        sinks[f"slack message {n}"] = json.dumps(message.__dict__, default=str)
    # every file written: our SQLite database and home, logs, Prefect's home (database, storage)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p != out_path]
    assert any(p.name == "prefect.db" for p in files) and any(p.name == "app.log" for p in files)
    assert any("storage" in p.parts for p in files), "no persisted Prefect result was found to scan"
    for path in files:
        sinks[f"file {path.relative_to(tmp_path)}"] = path.read_bytes().decode("latin-1")
    # our database, table by table, column by column, but for the ciphertext
    engine = sa.create_engine(f"sqlite:///{home / 'claude-pool.db'}")
    try:
        with engine.connect() as conn:
            for table in sa.inspect(conn).get_table_names():
                for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')).mappings():
                    for column, value in row.items():
                        if (table, column) != ("claude_accounts", "api_key_encrypted"):
                            name = f"db {table}.{column}"
                            sinks[name] = sinks.get(name, "") + f"\n{value}"
    finally:
        engine.dispose()
    return sinks


def _masked(text: str, keys: list[str]) -> str:
    """A failure message must not leak the canary either."""
    for key in keys:
        text = text.replace(key, "<CANARY KEY>")
    return text
