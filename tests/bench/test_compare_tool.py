"""``python -m bench.compare`` end to end on a short light scenario: the tool CI would otherwise
only meet when someone reproduces the README's table. Runs in the test environment, where LiteLLM
and matplotlib are absent: their columns must say "not run", never hold figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _row(table: str, contender: str) -> list[str]:
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == contender:
            return cells
    raise AssertionError(f"no row for {contender!r} in:\n{table}")


@pytest.mark.slow
def test_compare_runs_every_contender_it_can_and_says_which_it_cannot(tmp_path: Path, redis_url: str) -> None:
    output, plot = tmp_path / "RESULTS.md", tmp_path / "compare.png"
    done = subprocess.run(
        [sys.executable, "-m", "bench.compare", "--only", "light", "--duration", "8",
         "--output", str(output), "--plot", str(plot)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = output.read_text(encoding="utf-8")
    light = report[report.index("## light"):]
    assert "--only light --duration 8" in report  # the command that reproduces it

    for contender in ("claude-pool", "claude-pool Redis x3", "naive round-robin"):
        cells = _row(light, contender)
        goodput, failed, limited = cells[1], cells[2], cells[3]
        served = int(re.match(r"\d+% \((\d+)/", goodput).group(1))  # type: ignore[union-attr]
        assert served > 0, cells
        assert failed.startswith("0/"), cells  # half the capacity offered: nobody fails
        assert limited == "0", cells
    bare = _row(light, "bare client")
    assert bare[2].startswith("0/"), bare

    try:
        import litellm  # noqa: F401
    except ImportError:
        assert "never estimated" in report
        summary = report[report.index("## Summary"):report.index("## light")]
        header = _row(summary, "scenario")
        cells = dict(zip(header, _row(summary, "light"), strict=True))
        for contender in ("LiteLLM usage-v2 Redis x3", "LiteLLM shuffle"):
            assert cells[contender].startswith("not run"), cells
            assert f"| {contender} |" not in light  # no row of figures for it
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not plot.exists()
        assert "no plot" in done.stdout
