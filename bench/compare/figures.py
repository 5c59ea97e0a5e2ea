"""From a run's raw counts to the figures of the table."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from bench.compare.run import RunOutcome

__all__ = ["Figures", "compute", "percentile"]

LIMIT_COUNTERS = ("rejected_rate_limit_requests", "rejected_rate_limit_input_tokens", "rejected_rate_limit_output_tokens")
INJECTED_COUNTERS = (
    "rejected_auth", "rejected_spend_cap", "rejected_ramp", "fault_billing", "fault_500", "fault_503",
    "fault_504", "fault_529", "fault_reset", "fault_timeout", "fault_stream_error",
)
#: A broken key still receiving calls this close to the end of the load is "still sending".
STILL_SENDING_S = 5.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


@dataclass(frozen=True)
class Figures:
    contender: str
    scenario: str
    error: str | None
    goodput: float = float("nan")  # served in the load window / what the limits allow in it
    served: int = 0
    allowed: float = 0.0
    offered: int = 0
    ok: int = 0
    failed: int = 0
    failures: str = ""
    limit_429: int = 0
    injected: int = 0
    added_p50_ms: float = float("nan")
    added_p99_ms: float = float("nan")
    spread_cv: float = float("nan")  # coefficient of variation of each organization's use of its limit
    stop_s: float | None = None  # fault start -> last call the broken key received
    still_sending: bool = False
    broken_calls: int = 0  # calls the broken key received after the fault started
    cpu_ms_per_request: float = float("nan")
    processes: int = 0


def _served_by(outcome: RunOutcome, t: float) -> dict[str, int]:
    within = [s for s in outcome.samples if s.t <= t]
    if within:
        return within[-1].served
    return dict.fromkeys(outcome.key_orgs, 0)


def _stop_time(outcome: RunOutcome) -> tuple[float | None, bool, int]:
    scenario = outcome.scenario
    key, start = scenario.broken_key, scenario.fault_start
    if key is None or start is None:
        return None, False, 0
    at_start = [s for s in outcome.samples if s.t <= start]
    base = at_start[-1].received.get(key, 0) if at_start else 0
    calls = int(outcome.stats["keys"][key]["received"]) - base
    if calls <= 0:
        return 0.0, False, 0
    # The simulator's own time of the key's last call, on the load's clock.
    last = float(outcome.stats["last_received_s"][key]) - outcome.sim_offset_s
    still = last > scenario.duration_s - STILL_SENDING_S
    return max(last - start, 0.0), still, calls


def compute(outcome: RunOutcome, bare_p50_s: float) -> Figures:
    scenario = outcome.scenario
    if outcome.error is not None:
        return Figures(outcome.contender.name, scenario.name, outcome.error)
    served_keys = _served_by(outcome, scenario.duration_s)
    allowed = scenario.allowed(scenario.duration_s + outcome.rested_s)
    per_org: dict[str, int] = {}
    for name, n in served_keys.items():
        per_org[outcome.key_orgs[name]] = per_org.get(outcome.key_orgs[name], 0) + n
    broken_org = outcome.key_orgs.get(scenario.broken_key or "")
    limits = {o.id: o.limits.rpm for o in scenario.sim.orgs}
    uses = [per_org.get(o, 0) / rpm for o, rpm in limits.items() if o != broken_org]
    mean = statistics.fmean(uses) if uses else 0.0
    cv = statistics.pstdev(uses) / mean if len(uses) > 1 and mean > 0 else float("nan")
    latencies = [lat for r in outcome.results for lat in r["latencies"]]
    added = [max(lat - bare_p50_s, 0.0) * 1000 for lat in latencies]
    errors: dict[str, int] = {}
    for r in outcome.results:
        for name, n in r["errors"].items():
            errors[name] = errors.get(name, 0) + int(n)
    offered = sum(int(r["offered"]) for r in outcome.results)
    ok = sum(int(r["ok"]) for r in outcome.results)
    total = outcome.stats["total"]
    stop, still, calls = _stop_time(outcome)
    return Figures(
        contender=outcome.contender.name,
        scenario=scenario.name,
        error=None,
        goodput=sum(served_keys.values()) / allowed,
        served=sum(served_keys.values()),
        allowed=allowed,
        offered=offered,
        ok=ok,
        failed=offered - ok,
        failures=", ".join(f"{k} {v}" for k, v in sorted(errors.items(), key=lambda kv: -kv[1])),
        limit_429=sum(int(total[c]) for c in LIMIT_COUNTERS),
        injected=sum(int(total[c]) for c in INJECTED_COUNTERS),
        added_p50_ms=percentile(added, 50),
        added_p99_ms=percentile(added, 99),
        spread_cv=cv,
        stop_s=stop,
        still_sending=still,
        broken_calls=calls,
        cpu_ms_per_request=outcome.cpu_s * 1000 / offered if offered else float("nan"),
        processes=outcome.processes,
    )
