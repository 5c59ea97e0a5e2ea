"""Benchmark scenarios: a simulator scenario, the offered load, its duration, faults and workers.

A file (YAML or JSON) under ``bench/scenarios/`` holds one scenario. ``simulator`` is a
``claude_pool.simulator.Scenario`` as plain data (without faults); ``faults`` are the same rules
with times counted from the start of the load, posted to the simulator when the load starts, so a
contender's set-up time (imports, Prefect's ephemeral server) never shifts them.

Optional: ``contenders`` (names, from ``bench.compare.contenders``; default: the usual set) and
``measure_from_s`` (the figures count only requests due from then on, and what the simulator
served from then on: the steady state of a long load, without its first seconds).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from claude_pool.simulator import FaultRule, Scenario

__all__ = ["BenchScenario", "LoadPhase", "arrival_offsets", "load_scenarios", "staggered_phases"]

#: Hard bound on requests offered in one run, whatever a scenario file says.
MAX_REQUESTS = 5_000


@dataclass(frozen=True)
class LoadPhase:
    seconds: float
    factor: float  # offered requests per second, as a multiple of the pool's capacity


@dataclass(frozen=True)
class BenchScenario:
    name: str
    title: str
    simulator: dict[str, Any]
    phases: tuple[LoadPhase, ...]
    duration_s: float
    workers: int = 1
    max_tokens: int = 32
    budget_s: float = 20.0  # each request's time budget, the same for every contender
    faults: tuple[dict[str, Any], ...] = ()
    broken_key: str | None = None
    flow: bool = False
    contenders: tuple[str, ...] | None = None  # None: the default set
    measure_from_s: float | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def window_s(self) -> float:
        """Seconds from the load's start from which the figures count (0: all of it)."""
        return self.measure_from_s or 0.0

    def with_duration(self, seconds: float) -> BenchScenario:
        """The same scenario with a shorter or longer load (smoke runs); a measuring window that no
        longer fits in it is dropped, so the figures still count something."""
        keep = self.measure_from_s is not None and self.measure_from_s < seconds
        return replace(self, duration_s=seconds, measure_from_s=self.measure_from_s if keep else None)

    @property
    def sim(self) -> Scenario:
        return Scenario.from_dict(self.simulator)

    @property
    def capacity_rps(self) -> float:
        """Requests per second the limits allow: every organization's RPM (the binding limit here)."""
        return sum(o.limits.rpm for o in self.sim.orgs) / 60.0

    def allowed(self, seconds: float) -> float:
        """Requests the limits allow in ``seconds`` from empty buckets (the load starts on drained ones)."""
        return sum(o.limits.rpm * seconds / 60.0 for o in self.sim.orgs)

    @property
    def fault_start(self) -> float | None:
        starts = [float(f.get("start", 0.0)) for f in self.faults]
        return min(starts) if starts else None

    def fault_rules(self, offset: float) -> list[dict[str, Any]]:
        """The faults as the simulator's ``/_sim/faults`` takes them, shifted by ``offset`` seconds."""
        rules = []
        for raw in self.faults:
            data = dict(raw)
            data["start"] = float(data.get("start", 0.0)) + offset
            if data.get("end") is not None:
                data["end"] = float(data["end"]) + offset
            rules.append(FaultRule.from_dict(data).to_dict())
        return rules

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: Path | None = None) -> BenchScenario:
        load = dict(data.get("load") or {})
        if "phases" in load:
            phases = tuple(LoadPhase(float(p["seconds"]), float(p["factor"])) for p in load["phases"])
        else:
            phases = (LoadPhase(float(data["duration_s"]), float(load.get("factor", 1.0))),)
        sim = dict(data["simulator"])
        if sim.get("faults"):
            raise ValueError(f"{path}: put faults at the top level (times from the load's start)")
        contenders = data.get("contenders")
        if contenders is not None and (isinstance(contenders, str) or not contenders):
            raise ValueError(f"{path}: contenders must be a non-empty list of contender names")
        measure_from = data.get("measure_from_s")
        if measure_from is not None and not 0 <= float(measure_from) < float(data["duration_s"]):
            raise ValueError(f"{path}: measure_from_s must be at least 0 and less than duration_s")
        scenario = cls(
            name=str(data["name"]),
            title=str(data.get("title") or data["name"]),
            simulator=sim,
            phases=phases,
            duration_s=float(data["duration_s"]),
            workers=int(data.get("workers", 1)),
            max_tokens=int(data.get("max_tokens", 32)),
            budget_s=float(data.get("budget_s", 20.0)),
            faults=tuple(dict(f) for f in data.get("faults") or ()),
            broken_key=data.get("broken_key"),
            flow=bool(data.get("flow", False)),
            contenders=tuple(str(c) for c in contenders) if contenders is not None else None,
            measure_from_s=float(measure_from) if measure_from is not None else None,
            path=path,
        )
        scenario.sim  # validates the simulator part now, not in a worker  # noqa: B018
        scenario.fault_rules(0.0)
        if len(arrival_offsets(scenario)) > MAX_REQUESTS:
            raise ValueError(f"{path}: more than {MAX_REQUESTS} requests offered")
        return scenario


def arrival_offsets(scenario: BenchScenario) -> list[float]:
    """When each request is offered, in seconds from the start: evenly spaced at each phase's rate,
    the phases repeated until the duration ends. Deterministic, so every contender gets the same."""
    offsets: list[float] = []
    t = 0.0
    cycle = sum(p.seconds for p in scenario.phases)
    while t < scenario.duration_s and len(offsets) <= MAX_REQUESTS:
        within = t % cycle
        for phase in scenario.phases:
            if within < phase.seconds:
                break
            within -= phase.seconds
        rate = phase.factor * scenario.capacity_rps
        offsets.append(t)
        t += 1.0 / rate
    return offsets


def staggered_phases(offsets: Sequence[float], parties: int) -> list[float]:
    """How far each party's load is shifted from the common start: evenly across the shortest gap
    between two arrivals, so that no two parties' requests are due at the same instant.

    On one shared machine, contenders sent at the same instants wake together, and whoever has more
    work per call waits behind the others' wake-ups: a cost of the rig, not of any client. Shifted by
    less than one gap, each party still meets the same load (same count, same spacing, same phases).
    """
    gaps = [b - a for a, b in itertools.pairwise(offsets) if b > a]
    gap = min(gaps, default=1.0)
    return [k * gap / parties for k in range(parties)]


def load_scenarios(paths: Sequence[Path]) -> list[BenchScenario]:
    found = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        found.append(BenchScenario.from_dict(data, path=path))
    return found
