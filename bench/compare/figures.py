"""From a run's raw counts to the figures of the table."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.compare.measure import LIMIT_COUNTERS, Sample
from bench.compare.run import RunOutcome

__all__ = ["CallerView", "Figures", "caller_view", "compute", "measured_span", "percentile", "served_between"]

INJECTED_COUNTERS = (
    "rejected_auth", "rejected_spend_cap", "rejected_ramp", "fault_billing", "fault_500", "fault_503",
    "fault_504", "fault_529", "fault_reset", "fault_timeout", "fault_stream_error", "fault_stream_cut",
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
class CallerView:
    """What the callers saw of the requests due at or after a given second of the load."""

    offered: int
    served_s: tuple[float, ...]  # each served request: seconds from sending to its answer
    refused_s: tuple[float, ...]  # each failed request that was sent: seconds from sending to its failure
    failures: dict[str, int]  # failed requests by what the caller saw (exception type, "budget exceeded", ...)
    answered_after_load: int = 0  # served requests whose answer came after the load's last second

    @property
    def ok(self) -> int:
        return len(self.served_s)


#: One request as a worker records it: (due offset s, failure or None, seconds from sending or None).
Record = tuple[float, str | None, float | None]


def caller_view(records: Iterable[Record], since: float = 0.0, load_s: float = math.inf) -> CallerView:
    """From a worker's per-request records ``(due offset s, failure or None, seconds or None)``:
    the requests due at or after ``since`` (a request offered but never sent has no seconds), and
    how many of them were answered after ``load_s``, the load's length (sent when due)."""
    offered, served, refused, failures, after = 0, [], [], Counter[str](), 0
    for due, failure, elapsed in records:
        if due < since:
            continue
        offered += 1
        if failure is None:
            took = elapsed if elapsed is not None else 0.0  # a served request always has one
            served.append(took)
            if due + took > load_s:
                after += 1
            continue
        failures[failure] += 1
        if elapsed is not None:
            refused.append(elapsed)
    return CallerView(offered, tuple(served), tuple(refused), dict(failures), after)


def _bounds(samples: Sequence[Sample], since: float, until: float) -> tuple[Sample | None, Sample | None]:
    """The snapshot at ``since`` (None from the load's start) and the last one after it, up to ``until``."""
    starting = [s for s in samples if s.t == since] if since > 0 else []
    ending = [s for s in samples if since < s.t <= until or (since <= 0 and s.t <= until)]
    return (starting[-1] if starting else None), (ending[-1] if ending else None)


def served_between(samples: Sequence[Sample], since: float, until: float) -> dict[str, int] | None:
    """Requests the simulator served per key from the snapshot at ``since`` (0: the load's start,
    when the counters were reset) to the last snapshot at or before ``until``; None without them."""
    start, end = _bounds(samples, since, until)
    if end is None or (since > 0 and start is None):
        return None
    before = start.served if start is not None else {}
    return {k: n - before.get(k, 0) for k, n in end.served.items()}


def measured_span(samples: Sequence[Sample], since: float, until: float, load_start_sim_s: float) -> float:
    """Seconds the served counts of ``served_between`` cover, on the simulator's clock: a snapshot
    taken late on a busy machine counts more served requests, and its window is that much longer.
    ``until - since`` where the snapshots do not say when they were taken."""
    start, end = _bounds(samples, since, until)
    begin = load_start_sim_s if since <= 0 else (start.sim_s if start is not None else None)
    if end is None or end.sim_s is None or begin is None or end.sim_s <= begin:
        return until - since
    return end.sim_s - begin


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
    answered_after_load: int = 0  # served, the answer after the load's end (retries, a queue)
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
    served_p50_s: float = float("nan")  # latency of served requests as the caller saw it (absolute)
    served_p99_s: float = float("nan")
    refused_p50_ms: float = float("nan")  # sending -> the failure the caller saw, failed requests only
    refused_p99_ms: float = float("nan")
    since_s: float = 0.0  # the figures count from this second of the load (the scenario's measure_from_s)
    limit_429_since: int | None = None  # limit 429s from since_s to the end of the load


def _caller_view(outcome: RunOutcome, since: float) -> CallerView:
    if all("requests" in r for r in outcome.results):
        records = (rec for r in outcome.results for rec in r["requests"])
        return caller_view(records, since, outcome.scenario.duration_s)
    # The flow's batch keeps no per-request records: its latencies and failures, without times.
    errors: Counter[str] = Counter()
    for r in outcome.results:
        errors.update({str(k): int(v) for k, v in r["errors"].items()})
    return CallerView(
        sum(int(r["offered"]) for r in outcome.results),
        tuple(lat for r in outcome.results for lat in r["latencies"]), (), dict(errors),
    )


def _limited_since(samples: Sequence[Sample], since: float, until: float) -> int | None:
    at_start = [s.limited for s in samples if s.t == since]
    at_end = [s.limited for s in samples if s.t == until]
    return at_end[-1] - at_start[-1] if at_start and at_end else None


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
    since = scenario.window_s
    counted = served_between(outcome.samples, since, scenario.duration_s)
    served_keys = counted if counted is not None else dict.fromkeys(outcome.key_orgs, 0)
    span = measured_span(outcome.samples, since, scenario.duration_s, outcome.sim_offset_s)
    # From the load's start the buckets had refilled since the drain (rested_s); later, they are
    # long drained.
    allowed = scenario.allowed(span + (outcome.rested_s if since <= 0 else 0.0))
    per_org: dict[str, int] = {}
    for name, n in served_keys.items():
        per_org[outcome.key_orgs[name]] = per_org.get(outcome.key_orgs[name], 0) + n
    broken_org = outcome.key_orgs.get(scenario.broken_key or "")
    limits = {o.id: o.limits.rpm for o in scenario.sim.orgs}
    uses = [per_org.get(o, 0) / rpm for o, rpm in limits.items() if o != broken_org]
    mean = statistics.fmean(uses) if uses else 0.0
    cv = statistics.pstdev(uses) / mean if len(uses) > 1 and mean > 0 else float("nan")
    view = _caller_view(outcome, since)
    added = [max(lat - bare_p50_s, 0.0) * 1000 for lat in view.served_s]
    refused_ms = [t * 1000 for t in view.refused_s]
    total = outcome.stats["total"]
    stop, still, calls = _stop_time(outcome)
    cpu_s = outcome.cpu_window_s if since > 0 else outcome.cpu_s
    return Figures(
        contender=outcome.contender.name,
        scenario=scenario.name,
        error=None,
        goodput=sum(served_keys.values()) / allowed if counted is not None else float("nan"),
        served=sum(served_keys.values()),
        allowed=allowed,
        offered=view.offered,
        ok=view.ok,
        failed=view.offered - view.ok,
        answered_after_load=view.answered_after_load,
        failures=", ".join(f"{k} {v}" for k, v in sorted(view.failures.items(), key=lambda kv: -kv[1])),
        limit_429=sum(int(total[c]) for c in LIMIT_COUNTERS),
        injected=sum(int(total[c]) for c in INJECTED_COUNTERS),
        added_p50_ms=percentile(added, 50),
        added_p99_ms=percentile(added, 99),
        spread_cv=cv,
        stop_s=stop,
        still_sending=still,
        broken_calls=calls,
        cpu_ms_per_request=cpu_s * 1000 / view.offered if view.offered and cpu_s is not None else float("nan"),
        processes=outcome.processes,
        served_p50_s=percentile(list(view.served_s), 50),
        served_p99_s=percentile(list(view.served_s), 99),
        refused_p50_ms=percentile(refused_ms, 50),
        refused_p99_ms=percentile(refused_ms, 99),
        since_s=since,
        limit_429_since=_limited_since(outcome.samples, since, scenario.duration_s) if since > 0 else None,
    )
