"""Every party of a comparison (the contenders and the bare client) is offered the same load, and no
two parties' requests are due at the same instant: on one shared machine a request sent together
with five others waits behind their wake-ups, which is the rig's cost, not the client's."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from bench.compare.scenarios import arrival_offsets, load_scenarios, staggered_phases

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "bench" / "scenarios").rglob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_no_two_parties_are_offered_a_request_at_the_same_instant(path: Path) -> None:
    (scenario,) = load_scenarios([path])
    offsets = arrival_offsets(scenario)
    parties = 8  # the bare client and the most contenders a shipped scenario names (overload: 6)
    phases = staggered_phases(offsets, parties)
    shortest_gap = min(b - a for a, b in itertools.pairwise(offsets))

    instants = sorted(o + phase for phase in phases for o in offsets)
    closest = min(b - a for a, b in itertools.pairwise(instants))
    assert closest >= shortest_gap / parties * 0.999  # spread evenly, never on top of each other
    assert len(set(phases)) == parties
    # Each party meets the same arrivals, shifted by less than one gap.
    assert min(phases) >= 0.0
    assert max(phases) < shortest_gap
