"""``python -m bench.compare``: run every scenario against every contender, write the results.

    .venv-bench/bin/python -m bench.compare [--only steady,revoked] [--parallel 4] [--duration S]

Scenarios run ``--parallel`` at a time, the longest started first; within one, all contenders (and
the bare client, upstream's latency) are offered the same arrivals from the same second, each against
its own simulator process and shifted by its own fraction of the shortest gap between two arrivals.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.compare.contenders import BARE, ROOT, Contender, contenders_named, litellm_available
from bench.compare.figures import Figures, compute
from bench.compare.processes import warm_up
from bench.compare.report import write_plot, write_report
from bench.compare.run import RunOutcome, StartLine, bare_scenario, run_contender
from bench.compare.scenarios import BenchScenario, arrival_offsets, load_scenarios, staggered_phases


def _contenders_for(scenario: BenchScenario, litellm: str | None) -> list[Contender]:
    chosen = []
    for c in contenders_named(scenario.contenders, scenario.path or scenario.name):
        if c.client == "flow" and not scenario.flow and scenario.contenders is None:
            continue
        chosen.append(c)
    return chosen if litellm else [c for c in chosen if c.client != "litellm"]


async def run_scenario(scenario: BenchScenario, litellm: str | None, logs: Path) -> list[Figures]:
    contenders = _contenders_for(scenario, litellm)
    line = StartLine(len(contenders) + 1)
    offsets = arrival_offsets(scenario)
    phases = staggered_phases(offsets, len(contenders) + 1)
    started = time.monotonic()
    outcomes = await asyncio.gather(
        run_contender(BARE, bare_scenario(scenario), line, logs, offsets, phases[0]),
        *(run_contender(c, scenario, line, logs, offsets, phase)
          for c, phase in zip(contenders, phases[1:], strict=True)),
    )
    bare: RunOutcome = outcomes[0]
    bare_latencies = [lat for r in bare.results for lat in r["latencies"]]
    bare_p50 = statistics.median(bare_latencies) if bare_latencies else 0.0
    figures = [compute(o, bare_p50) for o in outcomes[1:]]
    figures.append(dataclasses.replace(compute(bare, 0.0), goodput=float("nan"), spread_cv=float("nan")))
    window = f", figures from {scenario.measure_from_s:.0f} s" if scenario.measure_from_s else ""
    print(f"[{scenario.name}] done in {time.monotonic() - started:.0f}s (bare p50 {bare_p50 * 1000:.1f} ms{window})",
          flush=True)
    for f in figures:
        state = f.error or (f"goodput {f.goodput:.0%}, failed {f.failed}/{f.offered}, 429s {f.limit_429}, "
                            f"injected {f.injected}, cpu {f.cpu_ms_per_request:.1f} ms/req, "
                            f"served p50/p99 {f.served_p50_s:.2f}/{f.served_p99_s:.2f} s, "
                            f"refused p50/p99 {f.refused_p50_ms:.0f}/{f.refused_p99_ms:.0f} ms")
        print(f"    {f.contender:<28} {state}", flush=True)
    return figures


async def main(args: argparse.Namespace) -> int:
    paths = args.scenario or sorted((ROOT / "bench" / "scenarios").glob("*.y*ml")) + sorted(
        (ROOT / "bench" / "scenarios").glob("*.json"))
    scenarios = load_scenarios(paths)
    if args.only:
        wanted = set(args.only.split(","))
        scenarios = [s for s in scenarios if s.name in wanted]
    if args.duration:
        scenarios = [s.with_duration(args.duration) for s in scenarios]
    for s in scenarios:  # an unknown contender name fails now, not minutes into the run
        contenders_named(s.contenders, s.path or s.name)
    litellm = litellm_available()
    if litellm is None:
        print("LiteLLM is not installed in this interpreter: its contenders are reported as not run.",
              file=sys.stderr)
    started = time.monotonic()
    warm_up(litellm=litellm is not None)
    print(f"fork server ready in {time.monotonic() - started:.0f}s", flush=True)
    running = asyncio.Semaphore(args.parallel)

    async def one(scenario: BenchScenario, logs: Path) -> list[Figures]:
        async with running:  # a scenario starts as soon as another ends, not group by group
            return await run_scenario(scenario, litellm, logs)

    # The longest first: the slots left free meanwhile run the short ones, and the run ends sooner.
    # (gather starts its tasks in this order, so they take the semaphore in this order.)
    launch = sorted(scenarios, key=lambda s: -s.duration_s)
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as logs:
        done = await asyncio.gather(*(one(s, Path(logs)) for s in launch))
    results = {s.name: figures for s, figures in zip(launch, done, strict=True)}
    elapsed = time.monotonic() - started
    command = "make bench-compare" if not (args.only or args.duration or args.scenario) else " ".join(
        [".venv-bench/bin/python -m bench.compare", *sys.argv[1:]])
    write_report(args.output, scenarios, results, litellm=litellm, elapsed_s=elapsed, command=command,
                 parallel=args.parallel)
    plotted = write_plot(args.plot, scenarios, results)
    print(f"wrote {args.output}" + (f" and {args.plot}" if plotted else " (no plot: matplotlib is not installed)")
          + f" in {elapsed:.0f}s")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--scenario", type=Path, action="append",
                        help="run this scenario file instead of bench/scenarios/*; repeatable "
                             "(bench/scenarios/extra/ holds some not in the default run)")
    parser.add_argument("--parallel", type=int, default=4, help="scenarios run at the same time")
    parser.add_argument("--duration", type=float, help="override every scenario's duration (smoke runs)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument("--plot", type=Path, default=ROOT / "bench" / "results" / "compare.png")
    sys.exit(asyncio.run(main(parser.parse_args())))
