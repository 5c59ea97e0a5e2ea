"""The scheduled deployments: intervals from the config only, one run at a time, a timeout on
every flow, and no repository clone before a run."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.schemas.objects import ConcurrencyLimitStrategy
from prefect.utilities.importtools import import_object

from claude_pool.core.config import load_config
from claude_pool_flows.schedules import main, render_prefect_yaml, schedule_intervals, served_deployments

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = yaml.safe_load((ROOT / "prefect.yaml").read_text())


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "capacity": {"syncIntervalSeconds": 120},
                "alerts": {"sweepIntervalSeconds": 30},
                "healthCheck": {"intervalSeconds": 900},
            }
        )
    )
    return path


def test_serve_flows_schedules_each_flow_at_the_configs_interval_one_run_at_a_time(config_path: Path) -> None:
    served = {d.name: d for d in served_deployments(load_config(config_path))}
    assert set(served) == {"delegate", "delegate-batch", "capacity-sync", "quota-sweep", "health-check"}
    expected = {"capacity-sync": 120, "quota-sweep": 30, "health-check": 900}
    for name, seconds in expected.items():
        [schedule] = served[name].schedules
        assert schedule.schedule.interval == timedelta(seconds=seconds)
        assert served[name].concurrency_limit == 1
        assert served[name].concurrency_options.collision_strategy is ConcurrencyLimitStrategy.CANCEL_NEW
    assert not served["delegate"].schedules


def test_prefect_yaml_is_written_from_the_config_and_ships_equal_to_the_shipped_config(
    config_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shipped = (ROOT / "prefect.yaml").read_text()
    shipped_intervals = schedule_intervals(str(ROOT / "config" / "multi-account.json"))
    assert render_prefect_yaml(shipped, shipped_intervals) == shipped
    copy = tmp_path / "prefect.yaml"
    copy.write_text(shipped)
    monkeypatch.setenv("CLAUDE_POOL_CONFIG", str(config_path))
    main([str(copy)])  # python -m claude_pool_flows.schedules prefect.yaml
    written = {d["name"]: d for d in yaml.safe_load(copy.read_text())["deployments"]}
    intervals = {name: written[name]["schedules"][0]["interval"] for name in ("capacity-sync", "quota-sweep", "health-check")}
    assert intervals == {"capacity-sync": 120, "quota-sweep": 30, "health-check": 900}
    assert render_prefect_yaml(copy.read_text(), shipped_intervals) == shipped  # nothing else changed


@pytest.mark.parametrize("deployment", PREFECT_YAML["deployments"], ids=lambda d: d["name"])
def test_prefect_yaml_guards_every_schedule_and_every_flow_has_a_timeout(deployment: dict[str, Any]) -> None:
    flow = import_object(deployment["entrypoint"])  # the installed package: nothing to clone
    assert flow.timeout_seconds, f"{deployment['name']}: its flow has no timeout"
    assert "description" not in deployment, "the flow's docstring describes the deployment"
    if deployment.get("schedules"):
        assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}


def test_no_run_starts_with_a_clone_of_the_repository() -> None:
    steps = [next(iter(step)) for step in PREFECT_YAML["pull"]]
    assert steps == ["prefect.deployments.steps.set_working_directory"]


def test_a_cached_call_result_expires() -> None:
    """The answer a retried run would find in the result store is not kept as a cache forever."""
    from claude_pool_tasks.delegation import call_claude

    assert call_claude.cache_expiration is not None and call_claude.cache_expiration <= timedelta(days=7)
