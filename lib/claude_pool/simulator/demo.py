"""The demo's rehearsal rig: a fresh home, simulated Anthropic and Slack, simulated accounts
registered, and the report a person reads at the end.

The Prefect side (running the flows) lives with the flows (``claude_pool_flows.cli``); this module
only sets the stage and reads it back.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claude_pool.core.crypto import generate_key
from claude_pool.core.settings import Settings
from claude_pool.runtime import Runtime
from claude_pool.simulator.accounts import register_simulated_accounts
from claude_pool.simulator.faults import FaultRule
from claude_pool.simulator.harness import RunningSimulator, RunningSlackSimulator, simulator, slack_simulator
from claude_pool.simulator.scenario import Limits, Scenario

__all__ = ["DemoRig", "demo_questions", "demo_rig", "demo_scenario", "report_lines"]

DEMO_ORGANIZATION = "demo"

# What a demo must not inherit from the shell: it runs on its own embedded stores and simulators.
_CLEARED = (
    "DATABASE_URL",
    "REDIS_URL",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_ADMIN_API_KEY",
    "SLACK_BOT_TOKEN",
    "SLACK_BASE_URL",
    "ANTHROPIC_API_KEY",
    "PREFECT_API_URL",
)


def demo_scenario(seed: int) -> Scenario:
    """Two healthy accounts with 60 and 120 requests per minute: a batch of 200 needs more than
    their minute, so requests wait for capacity, usage crosses the alert thresholds, and not one 429
    is caused by the pool. acct-3's key is revoked, acct-4 fails every call: fail-over and a breaker."""
    base = Scenario.uniform(accounts=4, rpm=120, itpm=400_000, otpm=80_000, seed=seed, round_tokens_to=1)
    orgs = list(base.orgs)
    orgs[0] = type(orgs[0])(orgs[0].id, Limits(rpm=60, itpm=400_000, otpm=80_000), orgs[0].admin_key)
    return base.with_(
        orgs=tuple(orgs),
        faults=(
            FaultRule(kind="error", status=503, rate=1.0, targets=("acct-4",)),
            FaultRule(kind="revoke", targets=("acct-3",)),
        ),
    )


def demo_questions(count: int) -> list[dict[str, Any]]:
    return [
        {"message": f"Question {i}: summarise the benefits of pooling API accounts.", "user_id": f"user-{i % 7}"}
        for i in range(count)
    ]


@dataclass
class DemoRig:
    home: Path
    settings: Settings
    sim: RunningSimulator
    slack: RunningSlackSimulator
    notes: list[str] = field(default_factory=list)

    def ground_truth(self) -> dict[str, str]:
        """What the simulators saw: the figures the pool's own report is checked against."""
        stats = self.sim.stats()
        return {
            "simulator ground truth": (
                f"{stats.total['served']} served, {stats.rate_limited} over-limit 429s, "
                f"{stats.total['fault_503']} injected 503s, {stats.total['rejected_auth']} revoked-key 401s"
            ),
            "slack messages": (
                f"{len(self.slack.messages_in('#eng-alerts'))} alert(s) in #eng-alerts, "
                f"{len(self.slack.messages_in('#it-test'))} in #it-test"
            ),
        }


def _fresh_home() -> tuple[Path, list[str]]:
    home = Path(os.environ.get("CLAUDE_POOL_HOME") or ".claude-pool") / "demo"
    if home.exists():
        shutil.rmtree(home)  # the demo's own folder: every run starts from nothing, reproducibly
    home.mkdir(parents=True)
    for name in _CLEARED:
        os.environ.pop(name, None)
    os.environ.update(CLAUDE_POOL_HOME=str(home.resolve()), LOG_FILE=str((home / "app.log").resolve()))
    notes = []
    if not os.environ.get("ENCRYPTION_KEY"):
        key_file = home / "encryption.key"
        key_file.write_text(generate_key())
        key_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
        os.environ["ENCRYPTION_KEY"] = key_file.read_text()
        notes.append(f"ENCRYPTION_KEY not set: using a demo key kept in {key_file}")
    return home, notes


@contextmanager
def demo_rig(seed: int) -> Iterator[DemoRig]:
    """The process's environment pointed at a fresh demo home and at running simulators, with the
    simulated accounts registered under the ``demo`` organization."""
    home, notes = _fresh_home()
    with simulator(demo_scenario(seed)) as sim, slack_simulator(rate_per_channel=20, burst=20) as slack:
        os.environ.update(
            ANTHROPIC_BASE_URL=sim.base_url, SLACK_BOT_TOKEN=slack.token, SLACK_BASE_URL=slack.base_url
        )
        settings = Settings.from_env()
        rt = Runtime.from_env(settings)
        try:
            rt.db.upgrade()
            register_simulated_accounts(rt.accounts, sim.keys, sim.orgs, organization_id=DEMO_ORGANIZATION)
        finally:
            rt.close()
        notes.append(f"simulated Anthropic at {sim.base_url}, simulated Slack at {slack.base_url}")
        notes.append(f"registered {len(sim.keys)} simulated accounts")
        yield DemoRig(home, settings, sim, slack, notes)


def report_lines(
    summary: Mapping[str, Any],
    sweep: Mapping[str, Any],
    synced: Mapping[str, Any],
    probes: list[Mapping[str, Any]],
    extra: Mapping[str, str] = {},
) -> list[str]:
    """The batch's summary and what the scheduled flows did, as a person reads it."""
    lines = [
        "=" * 72,
        f"delegate-batch: {summary['succeeded']}/{summary['requests']} requests succeeded in "
        f"{summary['elapsed_s']} s ({summary['requests_per_s']} req/s)",
        "requests per account:",
    ]
    for name, row in summary["per_account"].items():
        lines.append(
            f"  {name:<10} {row['requests']:>5} requests  {row['input_tokens']:>7} in / "
            f"{row['output_tokens']:>7} out tokens"
        )
    lines.append(f"fail-overs: {summary['failovers']}   failed requests: {summary['failed']} {summary['errors'] or ''}")
    lines.append(f"breaker changes: {len(summary['breaker_transitions'])}")
    lines += [f"  {t['account']}: {t['from']} -> {t['to']} ({t['reason']})" for t in summary["breaker_transitions"]]
    lines.append(f"quota sweep: {sweep['alerts_raised']} alert(s) raised, {sweep['sent']} sent to Slack")
    lines.append(
        f"capacity sync: {synced['accounts']} accounts snapshotted, {synced['leases_reclaimed']} leases reclaimed"
    )
    lines.append(
        "health check: "
        + ", ".join(f"{p['account_name']} {'ok' if p['ok'] else p['outcome']} ({p['status_after']})" for p in probes)
    )
    lines += [f"{key}: {value}" for key, value in extra.items()]
    lines.append("=" * 72)
    return lines
