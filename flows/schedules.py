"""The scheduled deployments' intervals, from one place: the config (``capacity.syncIntervalSeconds``,
``alerts.sweepIntervalSeconds``, ``healthCheck.intervalSeconds``).

``claude-pool serve-flows`` reads them when it starts. prefect.yaml cannot read a config (Prefect
validates its schedules before any step runs), so its intervals are written from the config by
``python -m claude_pool_flows.schedules [prefect.yaml]``, then ``prefect deploy --all``; a test
keeps the shipped prefect.yaml equal to the shipped config. Each scheduled deployment runs one at a
time: a run due while the last is still going is cancelled, not queued, so runs never pile up
behind a worker that was away.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

from claude_pool.core.config import PoolConfig, load_config
from claude_pool.core.settings import Settings

__all__ = ["ONE_AT_A_TIME", "render_prefect_yaml", "schedule_intervals", "served_deployments"]

#: The guard of every scheduled deployment (the same as ``concurrency_limit`` in prefect.yaml).
ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)


def _intervals(config: PoolConfig) -> dict[str, int]:
    return {
        "capacity_sync": config.capacity.sync_interval_seconds,
        "quota_sweep": config.alerts.sweep_interval_seconds,
        "health_check": config.health_check.interval_seconds,
    }


def schedule_intervals(config_path: str | None = None) -> dict[str, int]:
    """Seconds between runs of each scheduled flow, by flow (``capacity_sync`` ...), from the config
    at ``config_path`` (default: ``CLAUDE_POOL_CONFIG``, else config/multi-account.json)."""
    return _intervals(load_config(config_path or Settings.from_env().config_path))


def render_prefect_yaml(text: str, intervals: dict[str, int]) -> str:
    """prefect.yaml's ``text`` with the interval of each scheduled deployment set from
    ``intervals`` (as :func:`schedule_intervals` gives them); nothing else changes."""
    for flow_key, seconds in intervals.items():
        deployment = flow_key.replace("_", "-")
        pattern = re.compile(rf"(- name: {deployment}\n(?:(?!  - name: ).*\n)*?\s+- interval: )\d+")
        text, found = pattern.subn(rf"\g<1>{seconds}", text)
        if found != 1:
            raise ValueError(f"prefect.yaml: no schedule `- interval:` under deployment {deployment!r}")
    return text


def served_deployments(config: PoolConfig) -> list[Any]:
    """The five deployments ``serve-flows`` serves: the two delegations on demand, the three
    scheduled flows at the config's intervals, one run at a time."""
    from claude_pool_flows import capacity_sync, delegate, delegate_batch, health_check, quota_sweep

    every = _intervals(config)
    scheduled = {"capacity-sync": capacity_sync, "quota-sweep": quota_sweep, "health-check": health_check}
    return [
        delegate.to_deployment(name="delegate"),
        delegate_batch.to_deployment(name="delegate-batch"),
        *(
            flow.to_deployment(
                name=name, interval=every[name.replace("-", "_")], concurrency_limit=ONE_AT_A_TIME
            )
            for name, flow in scheduled.items()
        ),
    ]


def main(argv: list[str]) -> None:
    """``python -m claude_pool_flows.schedules [prefect.yaml]``: the file's intervals from the config."""
    path = Path(argv[0] if argv else "prefect.yaml")
    intervals = schedule_intervals()
    path.write_text(render_prefect_yaml(path.read_text(), intervals))
    print(f"{path}: " + ", ".join(f"{k} every {v} s" for k, v in intervals.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
