"""``bench/RESULTS.md`` and ``bench/results/compare.png`` from the figures of one run."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from bench.compare.contenders import BARE, KNOWN, ROOT, contenders_named
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


def _pair(low: float, high: float, fmt: str) -> str:
    return "-" if math.isnan(low) else f"{_num(low, fmt)} / {_num(high, fmt)}"


TABLE_HEAD = [
    "| contender | goodput | failed to caller | 429 (limits) | injected | added ms p50 / p99 | served s p50 / p99 | "
    "answered after the load | refused ms p50 / p99 | spread | stop | CPU ms/req | procs |",
    "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
]


def _goodput(f: Figures) -> str:
    return "-" if math.isnan(f.goodput) else f"{f.goodput:.0%} ({f.served}/{f.allowed:.0f})"


def _row(f: Figures) -> str:
    if f.error is not None:
        return f"| {f.contender} | {f.error} |" + " |" * (TABLE_HEAD[1].count("|") - 3)
    goodput = _goodput(f)
    return (
        f"| {f.contender} | {goodput} | "
        f"{f.failed}/{f.offered}{' (' + f.failures + ')' if f.failures else ''} | {f.limit_429} | {f.injected} | "
        f"{_num(f.added_p50_ms, ',.0f')} / {_num(f.added_p99_ms, ',.0f')} | "
        f"{_pair(f.served_p50_s, f.served_p99_s, '.3f')} | {f.answered_after_load} | "
        f"{_pair(f.refused_p50_ms, f.refused_p99_ms, ',.0f')} | "
        f"{_num(f.spread_cv * 100, '.0f')} % | {_stop(f)} | {_num(f.cpu_ms_per_request, '.2f')} | {f.processes} |"
    )


def _steady_state(s: BenchScenario, figures: list[Figures]) -> list[str]:
    """A scenario measured from ``measure_from_s``: one column per contender, one row per measure."""
    runs = [f for f in figures if f.contender != BARE.name]
    bare = next((f for f in figures if f.contender == BARE.name and f.error is None), None)
    since = f"{s.measure_from_s:.0f} s"

    def cells(show: Callable[[Figures], object]) -> str:
        return " | ".join("error" if f.error else str(show(f)) for f in runs)

    def limited(f: Figures) -> str:
        return f"{f.limit_429}" + (f" ({f.limit_429_since})" if f.limit_429_since is not None else "")

    upstream = f"{bare.served_p50_s * 1000:.0f} ms" if bare is not None else "not measured"
    return [
        "",
        f"Steady state, from {since} of load to its end; upstream latency (the bare client's p50): {upstream}.",
        "",
        f"| measured after {since}, {s.budget_s:.0f} s budget | " + " | ".join(f.contender for f in runs) + " |",
        "|---|" + "---:|" * len(runs),
        "| processes | " + cells(lambda f: f.processes) + " |",
        "| served requests, p50 / p99 latency (s) | " + cells(lambda f: _pair(f.served_p50_s, f.served_p99_s, ".3f"))
        + " |",
        "| refused requests, p50 / p99 time to the refusal (ms) | "
        + cells(lambda f: _pair(f.refused_p50_ms, f.refused_p99_ms, ",.0f")) + " |",
        "| failed to the caller / offered | " + cells(lambda f: f"{f.failed}/{f.offered}") + " |",
        "| CPU of the callers' processes per offered request (ms) | "
        + cells(lambda f: _num(f.cpu_ms_per_request, ".2f")) + " |",
        f"| goodput after {since} | " + cells(_goodput) + " |",
        f"| limit 429s, whole run (after {since}) | " + cells(limited) + " |",
    ]


def _versions(litellm: str | None) -> str:
    return (
        f"claude-pool {version('claude-pool')}, litellm {litellm or 'not installed'}, "
        f"anthropic {version('anthropic')}, prefect {version('prefect')}, Python {platform.python_version()}"
    )


def _names(scenarios: list[BenchScenario]) -> list[str]:
    """Every contender some scenario names, in the tables' order."""
    named = {c.name for s in scenarios for c in contenders_named(s.contenders, s.name)}
    return [c.name for c in KNOWN if c.name in named]


def _summary(scenarios: list[BenchScenario], results: dict[str, list[Figures]], names: list[str]) -> list[str]:
    lines = ["| scenario | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for s in scenarios:
        by_name = {f.contender: f for f in results.get(s.name, [])}
        intended = {c.name for c in contenders_named(s.contenders, s.name)}
        cells = []
        for n in names:
            f = by_name.get(n)
            if f is None:
                cells.append(LITELLM_MISSING if n.startswith("LiteLLM") and n in intended and not any(
                    x.contender.startswith("LiteLLM") for x in results.get(s.name, [])) else "")
            elif f.error:
                cells.append("error")
            else:
                share = "-" if math.isnan(f.goodput) else f"{f.goodput:.0%}"
                cells.append(f"{share} / {f.failed} / {f.limit_429}")
        lines.append(f"| {s.name} | " + " | ".join(cells) + " |")
    return lines


def write_report(path: Path, scenarios: list[BenchScenario], results: dict[str, list[Figures]], *,
                 litellm: str | None, elapsed_s: float, command: str, parallel: int) -> None:
    names = _names(scenarios)
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
        "- Each contender's load (the bare client's too) is shifted by its own fraction of the shortest gap",
        "  between two arrivals, so that no two of them send at the same instant: on one shared machine a",
        "  request sent together with the others' waits behind their wake-ups (before 2026-12-05 they were",
        "  not shifted, and that wait added some 5 ms to every contender's p50 at 0.5x but not to the bare",
        "  client's, which then sent on a grid of its own).",
        "- Every process (simulators, workers) is forked from one server that has imported LiteLLM, the SDKs and",
        "  claude-pool once (Prefect's flow worker excepted: a fresh interpreter, for its own settings); the load",
        "  of most scenarios lasts one minute (overload: three), so it crosses LiteLLM's per-minute counters'",
        "  minute boundaries.",
        "  `--duration S` runs longer loads (the faults keep their times), where the first minute weighs less.",
        "- The load is open-loop: requests arrive at fixed times (the same for everyone, shifted as above), each with a 20 s budget",
        "  (claude-pool: `deadline=`; LiteLLM: `timeout=`; all: a client-side timeout). The limits are small",
        "  (tens of RPM) and RPM is the binding limit.",
        "- Just before the load, every organization's request bucket is drained and the counters reset: the load",
        "  meets accounts in steady state (as after a busy minute), not a minute of rested capacity. The load",
        "  starts 2-3 s after the last contender's drain (what refilled since each drain counts in what the",
        "  limits allow).",
        "- **goodput**: requests the simulator served during the load window ÷ what the limits allow in it",
        "  (the refill of every organization's request bucket: `rpm * seconds / 60`, the seconds between the",
        "  snapshots of the counts on the simulator's own clock, so a snapshot taken late counts no extra).",
        "- **failed**: requests that failed to the caller (out of those offered), by exception type.",
        "- **429 (limits)**: the simulator's own count of rate-limit refusals; **injected**: the scenario's",
        "  faults that reached the simulator (500s, 401s, 529s).",
        "- **added latency**: each successful request's latency seen by the caller minus the median latency",
        "  of a bare `anthropic` client on an unlimited key, offered the same arrivals in the same run",
        "  (upstream's latency); under overload it includes the time spent waiting for capacity or retrying.",
        "- **spread**: coefficient of variation of each organization's use of its own limit (0 % = every",
        "  account used in proportion to its limits); the broken account is left out.",
        "- **stop**: from the fault's start to the last call the broken key received (the simulator's own",
        "  last-call time), and how many calls it received from 50 ms before the fault started.",
        "- **served s p50 / p99**: each served request's latency as its caller saw it, in seconds, absolute",
        "  (from the worker sending it to its answer: capacity waits and retries included, nothing subtracted).",
        "- **answered after the load**: served requests whose answer came after the load's last second",
        "  (due time + latency): what a queue or retries still serve once arrivals stop. Goodput leaves them",
        "  out (they fall after the window); \"failed to caller\" does not, so they are the gap between the two.",
        "- **refused ms p50 / p99**: for each request that failed to the caller, the time from sending it to",
        "  the failure (a refusal, an error, or the 20 s budget running out), in ms; `-` when none failed.",
        "- **CPU**: user+system CPU of the contender's processes (and their children: Prefect's ephemeral",
        "  server) during the load, per offered request. Redis's own CPU is not counted. It includes each",
        "  client's first-call costs (lazy imports, connections) spread over one minute's requests: a light",
        "  scenario run with `--duration 125` measured 14 to 27 % less per request, for every contender.",
        "- **measure_from_s** (a scenario's option; the overload scenario: 40 s): its figures leave out the",
        "  load's first seconds. Failed, latencies and refusals count the requests due at or after it; goodput",
        "  is what the simulator served from a snapshot taken at that second to the end ÷ what the limits allow",
        "  in that time (above 100 % when a contender left capacity unused before it: a bucket holds up to a",
        "  minute's worth); CPU is what the processes used from that second to the end of the run ÷ the requests",
        "  offered from it. 429s and injected faults stay whole-run counts (the steady-state table also gives",
        "  the 429s after it). A `--duration` shorter than it drops the window.",
        "- The longest scenario is started first; a scenario may name its own contenders (`contenders:`).",
        "",
        "## Contenders",
        "",
        *[f"- **{c.name}**: {c.note}" for c in (*KNOWN, BARE) if c.name in names or c is BARE],
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
            f"`{_shown(s.path) if s.path else s.name}`; {s.duration_s:.0f} s of load, "
            f"capacity {s.capacity_rps * 60:.0f} RPM"
            + (f", {s.workers} worker processes" if s.workers > 1 else "")
            + (f"; figures from {s.measure_from_s:.0f} s of load on (`measure_from_s`)" if s.measure_from_s else "")
            + ".",
        ]
        if s.name in CANNOT:
            lines += ["", CANNOT[s.name]]
        if s.measure_from_s:
            lines += _steady_state(s, results.get(s.name, []))
        lines += ["", *TABLE_HEAD, *[_row(f) for f in results.get(s.name, [])]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_plot(path: Path, scenarios: list[BenchScenario], results: dict[str, list[Figures]]) -> bool:
    """The PNG beside the table; False (nothing written) where matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = _names(scenarios)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 8.5), sharex=True)
    palette = plt.get_cmap("tab10").colors
    colors = {name: palette[j % len(palette)] for j, name in enumerate(names)}
    labelled: set[str] = set()
    for i, s in enumerate(scenarios):
        # Only the contenders this scenario ran, side by side: no gaps for the others.
        present = [f for n in names for f in results.get(s.name, []) if f.contender == n and f.error is None]
        width = 0.8 / max(len(present), 1)
        for j, f in enumerate(present):
            x = i + (j - (len(present) - 1) / 2) * width
            label = f.contender if f.contender not in labelled else None
            labelled.add(f.contender)
            top.bar([x], [f.goodput * 100], width, label=label, color=colors[f.contender])
            bottom.bar([x], [f.limit_429], width, color=colors[f.contender])
            if f.limit_429 == 0:  # a bar of height zero is invisible: say it
                bottom.text(x, 0.05, "0", ha="center", va="bottom", fontsize=7, color=colors[f.contender])
    top.set_ylabel("goodput, % of what the limits allow")
    top.set_ylim(0, 109)
    top.axhline(100, color="grey", linewidth=0.8, linestyle="--")
    fig.suptitle("Same scenarios, same run: goodput (higher is better) and upstream 429s (lower is better)")
    handles, labels = top.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda k: names.index(labels[k]))
    rows = -(-len(labels) // 5)
    fig.legend([handles[k] for k in order], [labels[k] for k in order], ncol=min(len(labels), 5), fontsize=9,
               loc="upper center", bbox_to_anchor=(0.5, 0.955), frameon=False)
    # symlog: linear below 1, so zero sits on the axis; logarithmic above, for counts in the hundreds.
    bottom.set_yscale("symlog", linthresh=1)
    bottom.set_ylim(0, None)
    bottom.set_ylabel("upstream 429s from the limits")
    bottom.set_xticks(range(len(scenarios)), [s.name for s in scenarios], rotation=0)
    for ax in (top, bottom):
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout(rect=(0, 0, 1, 0.93 - 0.025 * max(rows - 1, 0)))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _shown(path: Path) -> Path:
    """A scenario file as the report names it: from the repository's root, or as given when it
    lives elsewhere (``--scenario``)."""
    resolved = path.resolve()
    return resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else path
