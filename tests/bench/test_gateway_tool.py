"""``python -m bench.compare.gateway`` end to end on a few requests: the tool behind the README's
gateway figures. Runs in the test environment, where LiteLLM's proxy is absent: its rows must say
"not run" and why, never hold figures; the simulator and claude-pool's ``/v1/messages`` are measured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.compare.gateway_load import LightTimings
from bench.compare.gateway_paths import Target
from bench.compare.gateway_report import light_rows, light_table, targets_verdict

ROOT = Path(__file__).resolve().parents[2]
DIRECT, POOL, LITELLM = "direct (simulator)", "claude-pool /v1/messages", "LiteLLM proxy /v1/messages"


def _row(table: str, name: str) -> list[str]:
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == name:
            return cells
    raise AssertionError(f"no row for {name!r} in:\n{table}")


def _section(report: str, title: str) -> str:
    start = report.index(title)
    end = report.find("\n## ", start + 1)
    return report[start : end if end >= 0 else None]


@pytest.mark.slow
def test_gateway_bench_measures_each_target_it_can_and_says_why_not_the_others(tmp_path: Path) -> None:
    output = tmp_path / "gateway.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench.compare.gateway", "--requests", "10", "--batch", "10", "--rate", "50",
         "--load-seconds", "4", "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = output.read_text(encoding="utf-8")
    assert "--requests 10 --batch 10" in report  # the command that reproduces it
    light = _section(report, "## Light load")
    for name in (DIRECT, POOL):
        cells = _row(light, name)
        assert cells[-1] == "0", cells  # no request failed
        float(cells[1].split(" / ")[0])  # a p50 in milliseconds, not "not run"
    assert _row(light, POOL)[2] != "baseline"  # claude-pool's row is measured against direct
    assert "Issue 15's targets" in report

    load = _section(report, "## Under limits")
    for name in (DIRECT, POOL):
        cells = _row(load, name)
        offered, answered = int(cells[1]), int(cells[2])
        assert 0 < answered <= offered, cells
        int(cells[4])  # the simulator's count of 429s

    if not (Path(sys.executable).parent / "litellm").exists():
        for section in (light, load):
            assert _row(section, LITELLM)[1].startswith("not run: LiteLLM's proxy is not installed"), section


def test_a_target_that_did_not_run_has_its_reason_and_no_figures() -> None:
    measured = [Target(DIRECT, "http://direct", {}, []), Target(POOL, "http://pool", {}, [])]
    timings = {
        DIRECT: LightTimings(messages_s=[0.001] * 10, ttfb_s=[0.001] * 10, stream_s=[0.002] * 10),
        POOL: LightTimings(messages_s=[0.021] * 10, ttfb_s=[0.004] * 10, stream_s=[0.005] * 10),
    }
    skipped = Target(LITELLM, "", {}, [], skipped="LiteLLM's proxy did not start: exited with code 1")
    rows = light_rows(measured, timings)
    table = light_table(rows, [skipped])

    assert _row(table, DIRECT)[2] == "baseline"
    assert _row(table, POOL)[2] == "+20.0 / +20.0"
    assert _row(table, LITELLM)[1] == "not run: LiteLLM's proxy did not start: exited with code 1"
    verdict = targets_verdict(rows, POOL, LITELLM)
    assert verdict[0].endswith("NOT met")  # 20 ms added at p50 is over the 3 ms target
    assert verdict[2].endswith(": met")  # 3 ms added to the first byte is within 5 ms
    assert "not measured" in verdict[-1]
