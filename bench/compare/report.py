"""``bench/RESULTS.md`` and ``bench/results/compare.png`` from the figures of one run."""

from __future__ import annotations

import math
import os
import platform
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from bench.compare.contenders import BARE, CONTENDERS
from bench.compare.figures import Figures
from bench.compare.scenarios import BenchScenario

__all__ = ["write_plot", "write_report"]

LITELLM_MISSING = "not run: LiteLLM could not be installed"

CANNOT = {
    "steady": "The delegate_batch flow is a batch, not an open loop: it is handed every request at the start "
    "and runs them 32 at a time, each waiting up to 20 s for capacity once it starts, so its requests queue "
    "inside the flow instead of failing, and the run lasts until the last is served. Its latency is the "
    "pool's own (from `orchestrator_executions`), without the time queued in the batch.",
    "shared-org": "LiteLLM has no shared-organization bucket: the two keys of one organization are two "
    "deployments to it, each given the organization's whole limits (as copied from the console), so "
    "it plans for 180 RPM where 120 exist. claude-pool registers them in one `capacity_group`.",
    "workers": "Naive round-robin and LiteLLM simple-shuffle share nothing between processes (each worker "
    "counts alone); usage-based-routing-v2 and claude-pool share their counts through Redis, and "
    "`claude-pool` (embedded) through its SQLite store on this machine.",
}


def _num(value: float, fmt: str, empty: str = "-") -> str:
    return empty if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _stop(f: Figures) -> str:
    if f.stop_s is None:
        return "-"
    if f.still_sending:
        return f"kept sending ({f.broken_calls} calls)"
    return f"{f.stop_s:.1f} s ({f.broken_calls} calls)"


def _row(f: Figures) -> str:
    if f.error is not None:
        return f"| {f.contender} | {f.error} |" + " |" * 8
    goodput = "-" if math.isnan(f.goodput) else f"{f.goodput:.0%} ({f.served}/{f.allowed:.0f})"
    return (
        f"| {f.contender} | {goodput} | "
        f"{f.failed}/{f.offered}{' (' + f.failures + ')' if f.failures else ''} | {f.limit_429} | {f.injected} | "
        f"{_num(f.added_p50_ms, ',.0f')} / {_num(f.added_p99_ms, ',.0f')} | {_num(f.spread_cv * 100, '.0f')} % | "
        f"{_stop(f)} | {_num(f.cpu_ms_per_request, '.2f')} | {f.processes} |"
    )


def _versions(litellm: str | None) -> str:
    return (
        f"claude-pool {version('claude-pool')}, litellm {litellm or 'not installed'}, "
        f"anthropic {version('anthropic')}, prefect {version('prefect')}, Python {platform.python_version()}"
    )


def _summary(scenarios: list[BenchScenario], results: dict[str, list[Figures]], names: list[str]) -> list[str]:
    lines = ["| scenario | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for s in scenarios:
        by_name = {f.contender: f for f in results.get(s.name, [])}
        cells = []
        for n in names:
            f = by_name.get(n)
            if f is None:
                cells.append(LITELLM_MISSING if n.startswith("LiteLLM") and not any(
                    x.contender.startswith("LiteLLM") for x in results.get(s.name, [])) else "")
            elif f.error:
                cells.append("error")
            else:
                cells.append(f"{f.goodput:.0%} / {f.failed} / {f.limit_429}")
        lines.append(f"| {s.name} | " + " | ".join(cells) + " |")
    return lines


def write_report(path: Path, scenarios: list[BenchScenario], results: dict[str, list[Figures]], *,
                 litellm: str | None, elapsed_s: float, command: str, parallel: int) -> None:
    names = [c.name for c in CONTENDERS]
    lines = [
        "# claude-pool beside LiteLLM Router and naive round-robin",
        "",
        "Written by `bench/compare` (do not edit by hand). Reproduce with:",
        "",
        f"    {command}",
        "",
        f"Run {datetime.now(UTC).isoformat(timespec='seconds')} on {platform.platform()}, {os.cpu_count()} CPUs "
        f"(shared and noisy: compare within one run), in {elapsed_s / 60:.1f} minutes; {_versions(litellm)}.",
        "",
        "## How it is measured",
        "",
        "- Each contender runs each scenario against **its own fresh simulator process** (same scenario file, same",
        "  seed); all contenders of a scenario start their load on the same second, next to a bare client; "
        f"{parallel} scenarios run at a time.",
        "- Every process (simulators, workers) is forked from one server that has imported LiteLLM, the SDKs and",
        "  claude-pool once (Prefect's flow worker excepted: a fresh interpreter, for its own settings); the load",
        "  of each scenario lasts one minute, so it crosses one minute boundary of LiteLLM's per-minute counters.",
        "  `--duration S` runs longer loads (the faults keep their times), where the first minute weighs less.",
        "- The load is open-loop: requests arrive at fixed times (the same for everyone), each with a 20 s budget",
        "  (claude-pool: `deadline=`; LiteLLM: `timeout=`; all: a client-side timeout). The limits are small",
        "  (tens of RPM) and RPM is the binding limit.",
        "- Just before the load, every organization's request bucket is drained and the counters reset: the load",
        "  meets accounts in steady state (as after a busy minute), not a minute of rested capacity.",
        "- **goodput**: requests the simulator served during the load window ÷ what the limits allow in it",
        "  (the refill of every organization's request bucket: `rpm * duration / 60`).",
        "- **failed**: requests that failed to the caller (out of those offered), by exception type.",
        "- **429 (limits)**: the simulator's own count of rate-limit refusals; **injected**: the scenario's",
        "  faults that reached the simulator (500s, 401s, 529s).",
        "- **added latency**: each successful request's latency seen by the caller minus the median latency",
        "  of a bare `anthropic` client on an unlimited key in the same run; under overload it includes the",
        "  time spent waiting for capacity or retrying.",
        "- **spread**: coefficient of variation of each organization's use of its own limit (0 % = every",
        "  account used in proportion to its limits); the broken account is left out.",
        "- **stop**: from the fault's start to the last call the broken key received (the simulator's own",
        "  last-call time), and how many calls it received from 50 ms before the fault started.",
        "- **CPU**: user+system CPU of the contender's processes (and their children: Prefect's ephemeral",
        "  server) during the load, per offered request. Redis's own CPU is not counted. It includes each",
        "  client's first-call costs (lazy imports, connections) spread over one minute's requests: a light",
        "  scenario run with `--duration 125` measured 14 to 27 % less per request, for every contender.",
        "",
        "## Contenders",
        "",
        *[f"- **{c.name}**: {c.note}" for c in (*CONTENDERS, BARE)],
        "- LiteLLM: `model_list` entries `anthropic/claude-sonnet-5-5` with each key, `api_base` the simulator,",
        "  `rpm` = the organization's RPM, `tpm` = its ITPM + OTPM; `num_retries=3`, `allowed_fails=3`,",
        "  `cooldown_time=30`, `timeout=20`.",
    ]
    if litellm is None:
        lines += ["", f"**LiteLLM**: {LITELLM_MISSING} in `.venv-bench`; its columns are empty, never estimated."]
    lines += [
        "",
        "## Summary: goodput / failed to caller / upstream 429s",
        "",
        *_summary(scenarios, results, names),
    ]
    for s in scenarios:
        lines += [
            "",
            f"## {s.name}: {s.title}",
            "",
            f"`{s.path.relative_to(s.path.parents[2]) if s.path else s.name}`; {s.duration_s:.0f} s of load, "
            f"capacity {s.capacity_rps * 60:.0f} RPM"
            + (f", {s.workers} worker processes" if s.workers > 1 else "") + ".",
        ]
        if s.name in CANNOT:
            lines += ["", CANNOT[s.name]]
        lines += [
            "",
            "| contender | goodput | failed to caller | 429 (limits) | injected | added ms p50 / p99 | spread | "
            "stop | CPU ms/req | procs |",
            "|---|---:|---|---:|---:|---:|---:|---|---:|---:|",
            *[_row(f) for f in results.get(s.name, [])],
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_plot(path: Path, scenarios: list[BenchScenario], results: dict[str, list[Figures]]) -> bool:
    """The PNG beside the table; False (nothing written) where matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c.name for c in CONTENDERS]
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 8.5), sharex=True)
    width = 0.8 / len(names)
    colors = plt.get_cmap("tab10").colors
    for j, name in enumerate(names):
        xs, goodput, limited = [], [], []
        for i, s in enumerate(scenarios):
            f = next((x for x in results.get(s.name, []) if x.contender == name and x.error is None), None)
            if f is not None:
                xs.append(i + (j - (len(names) - 1) / 2) * width)
                goodput.append(f.goodput * 100)
                limited.append(f.limit_429)
        top.bar(xs, goodput, width, label=name, color=colors[j])
        bottom.bar(xs, limited, width, color=colors[j])
        for x, v in zip(xs, limited, strict=True):
            if v == 0:  # a bar of height zero is invisible: say it
                bottom.text(x, 0.05, "0", ha="center", va="bottom", fontsize=7, color=colors[j])
    top.set_ylabel("goodput, % of what the limits allow")
    top.set_ylim(0, 109)
    top.axhline(100, color="grey", linewidth=0.8, linestyle="--")
    fig.suptitle("Same scenarios, same run: goodput (higher is better) and upstream 429s (lower is better)")
    fig.legend(ncol=len(names), fontsize=9, loc="upper center", bbox_to_anchor=(0.5, 0.955), frameon=False)
    # symlog: linear below 1, so zero sits on the axis; logarithmic above, for counts in the hundreds.
    bottom.set_yscale("symlog", linthresh=1)
    bottom.set_ylim(0, None)
    bottom.set_ylabel("upstream 429s from the limits")
    bottom.set_xticks(range(len(scenarios)), [s.name for s in scenarios], rotation=0)
    for ax in (top, bottom):
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
