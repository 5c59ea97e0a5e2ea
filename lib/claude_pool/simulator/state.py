"""The simulator's mutable state: keys, buckets, faults and the counts that tests treat as ground truth.

Only the server's event loop touches a ``SimulatorState``; other threads go through the harness,
which hands calls to that loop. That keeps every request's admission atomic without a lock.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from claude_pool.simulator.buckets import OrgBuckets
from claude_pool.simulator.faults import FaultBook, FaultRule
from claude_pool.simulator.scenario import KeySpec, Limits, OrgSpec, Scenario, derive_admin_key

__all__ = ["COUNTERS", "REQUEST_LOG_SIZE", "RequestRecord", "SimulatorState", "Stats"]

#: Requests remembered per key by the request log, newest last; older ones are dropped.
REQUEST_LOG_SIZE = 100

#: Every counter kept per key; an organization's counts are the sums over its keys.
COUNTERS = (
    "received",  # every request under /v1/messages that named a known key, whatever happened next
    "served",  # 2xx answers (a stream that later failed with an error event still counts here)
    "input_tokens",  # input tokens of served requests
    "output_tokens",  # output tokens actually produced
    "count_tokens",  # count_tokens calls (not rate limited here)
    "models",  # Models API calls, list or retrieve, whatever their answer (not rate limited, not received)
    "rejected_rate_limit_requests",  # 429 rate_limit_error, RPM bucket lacked room
    "rejected_rate_limit_input_tokens",  # ... ITPM
    "rejected_rate_limit_output_tokens",  # ... OTPM
    "rejected_spend_cap",  # 429 enforced_spend_limit_reached
    "rejected_ramp",  # 429 ramp_limit_exceeded
    "rejected_auth",  # 401/403 for a revoked key
    "rejected_invalid",  # 400 / 404 / 413
    "fault_billing",  # 402
    "fault_500",
    "fault_503",
    "fault_504",
    "fault_529",
    "fault_reset",
    "fault_timeout",
    "fault_stream_error",
    "fault_stream_cut",
)


class RequestRecord(NamedTuple):
    """What one request brought, as the log keeps it: a tuple, so that recording costs one append."""

    request_id: str
    method: str
    path: str
    query: str
    anthropic_version: str | None
    anthropic_beta: str | None
    body: Any  # the parsed JSON body; None for a GET

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": {"anthropic-version": self.anthropic_version, "anthropic-beta": self.anthropic_beta},
            "body": self.body,
        }


@dataclass
class Stats:
    """A snapshot of the counts. ``keys`` by key name, ``orgs`` by organization id."""

    keys: dict[str, dict[str, int]]
    orgs: dict[str, dict[str, int]]
    total: dict[str, int]
    unauthenticated: int = 0
    elapsed_s: float = 0.0
    key_names: dict[str, str] = field(default_factory=dict)  # secret -> name
    # key name -> seconds from the simulator's start to the last request it received (None: none yet),
    # so "when did this key stop getting calls" needs one snapshot, not polling.
    last_received_s: dict[str, float | None] = field(default_factory=dict)

    def key(self, ref: str) -> dict[str, int]:
        """Counts of one key, by name or secret."""
        return self.keys[self.key_names.get(ref, ref)]

    def org(self, org_id: str) -> dict[str, int]:
        return self.orgs[org_id]

    @property
    def rate_limited(self) -> int:
        return sum(
            self.total[f"rejected_rate_limit_{m}"] for m in ("requests", "input_tokens", "output_tokens")
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "keys": self.keys,
            "orgs": self.orgs,
            "total": self.total,
            "unauthenticated": self.unauthenticated,
            "elapsed_s": self.elapsed_s,
            "last_received_s": self.last_received_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], key_names: Mapping[str, str] | None = None) -> Stats:
        return cls(
            keys=dict(data["keys"]),
            orgs=dict(data["orgs"]),
            total=dict(data["total"]),
            unauthenticated=int(data.get("unauthenticated", 0)),
            elapsed_s=float(data.get("elapsed_s", 0.0)),
            key_names=dict(key_names or {}),
            last_received_s=dict(data.get("last_received_s") or {}),
        )


class SimulatorState:
    def __init__(self, scenario: Scenario, *, clock: Any = time.monotonic) -> None:
        self.scenario = scenario
        self.clock = clock
        self.started_mono = clock()
        # Wall time is derived from the monotonic clock so reset headers never jump backwards.
        self.started_wall = time.time()
        self.orgs: dict[str, OrgSpec] = {o.id: o for o in scenario.orgs}
        self.keys: dict[str, KeySpec] = {k.key: k for k in scenario.keys}
        self.admin_keys: dict[str, OrgSpec] = {o.admin_key: o for o in scenario.orgs}
        self.buckets: dict[str, OrgBuckets] = {
            o.id: OrgBuckets(o.limits, self.started_mono) for o in scenario.orgs
        }
        self.counters: dict[str, Counter[str]] = {k.name: Counter() for k in scenario.keys}
        self.last_received: dict[str, float] = {}  # key name -> monotonic time of its last request
        # key name -> the last requests it made that were authenticated and parsed, for pass-through checks.
        self.request_log: dict[str, deque[RequestRecord]] = {
            k.name: deque(maxlen=REQUEST_LOG_SIZE) for k in scenario.keys
        }
        self.unauthenticated = 0
        self.revoked: dict[str, int] = {}  # secret -> 401 or 403
        self.faults = FaultBook(scenario.faults, seed=scenario.seed)
        self.served_tokens: Counter[str] = Counter()  # per org, for spend caps
        # (minute start as epoch seconds, key secret) -> [uncached input tokens, output tokens]
        self.usage: dict[tuple[int, str], list[int]] = {}

    # ---- time ----------------------------------------------------------------------------------

    def now(self) -> float:
        return float(self.clock())

    def elapsed(self, now: float | None = None) -> float:
        return float((self.now() if now is None else now) - self.started_mono)

    def wall(self, now: float) -> float:
        return float(self.started_wall + (now - self.started_mono))

    # ---- accounting ----------------------------------------------------------------------------

    def record_served(self, key: KeySpec, input_tokens: int, output_tokens: int, now: float) -> None:
        c = self.counters[key.name]
        c["input_tokens"] += input_tokens
        c["output_tokens"] += output_tokens
        self.served_tokens[key.org] += input_tokens + output_tokens
        minute = int(self.wall(now)) // 60 * 60
        cell = self.usage.get((minute, key.key))
        if cell is None:
            self.usage[(minute, key.key)] = [input_tokens, output_tokens]
        else:
            cell[0] += input_tokens
            cell[1] += output_tokens

    def over_spend_cap(self, key: KeySpec) -> bool:
        cap = self.orgs[key.org].spend_cap_tokens
        return cap is not None and self.served_tokens[key.org] >= cap

    # ---- control -------------------------------------------------------------------------------

    def resolve_key(self, ref: str) -> KeySpec:
        found = self.keys.get(ref)
        if found is not None:
            return found
        for k in self.keys.values():
            if k.name == ref:
                return k
        raise KeyError(f"no simulated key {ref!r}")

    def revoke(self, ref: str, status: int = 401) -> None:
        if status not in (401, 403):
            raise ValueError("a revoked key answers 401 or 403")
        self.revoked[self.resolve_key(ref).key] = status

    def restore(self, ref: str) -> None:
        self.revoked.pop(self.resolve_key(ref).key, None)

    def set_faults(self, rules: Iterable[FaultRule]) -> None:
        self.faults.replace(rules)

    def add_fault(self, rule: FaultRule) -> None:
        self.faults.add(rule)

    def add_org(self, org_id: str, limits: Limits, *, spend_cap_tokens: int | None = None) -> OrgSpec:
        org = OrgSpec(
            org_id, limits, derive_admin_key(self.scenario.seed, 1000 + len(self.orgs)), spend_cap_tokens
        )
        self.orgs[org_id] = org
        self.admin_keys[org.admin_key] = org
        self.buckets[org_id] = OrgBuckets(limits, self.now())
        return org

    def add_key(self, key: KeySpec) -> KeySpec:
        if key.org not in self.orgs:
            raise KeyError(f"no simulated organization {key.org!r}")
        if key.key in self.keys or key.name in self.counters:
            raise ValueError(f"key {key.name!r} already exists")
        self.keys[key.key] = key
        self.counters[key.name] = Counter()
        self.request_log[key.name] = deque(maxlen=REQUEST_LOG_SIZE)
        return key

    def set_limits(self, org_id: str, limits: Limits) -> None:
        self.orgs[org_id] = replace(self.orgs[org_id], limits=limits)
        self.buckets[org_id].set_limits(limits, self.now())

    def reset(self, *, counters: bool = True, buckets: bool = True) -> None:
        """Forget counts, usage and the request log, and/or refill every bucket; keys, revocations and
        faults stay."""
        now = self.now()
        if counters:
            self.counters = {name: Counter() for name in self.counters}
            for log in self.request_log.values():
                log.clear()
            self.last_received.clear()
            self.unauthenticated = 0
            self.served_tokens.clear()
            self.usage.clear()
        if buckets:
            self.buckets = {o.id: OrgBuckets(o.limits, now) for o in self.orgs.values()}

    def requests_of(self, ref: str) -> list[dict[str, Any]]:
        """The request log of one key (by name or secret), oldest first."""
        return [record.to_dict() for record in self.request_log[self.resolve_key(ref).name]]

    def stats(self) -> Stats:
        keys = {name: {n: c[n] for n in COUNTERS} for name, c in self.counters.items()}
        orgs: dict[str, dict[str, int]] = {o: dict.fromkeys(COUNTERS, 0) for o in self.orgs}
        total = dict.fromkeys(COUNTERS, 0)
        for key in self.keys.values():
            for n, v in keys[key.name].items():
                orgs[key.org][n] += v
                total[n] += v
        return Stats(
            keys=keys,
            orgs=orgs,
            total=total,
            unauthenticated=self.unauthenticated,
            elapsed_s=self.elapsed(),
            key_names={k.key: k.name for k in self.keys.values()},
            last_received_s={
                name: (self.elapsed(self.last_received[name]) if name in self.last_received else None)
                for name in self.counters
            },
        )

    def describe(self) -> dict[str, Any]:
        """Keys, organizations and limits, as the control endpoint and the CLI show them."""
        return {
            "organizations": [
                {
                    "id": o.id,
                    "limits": {"rpm": o.limits.rpm, "itpm": o.limits.itpm, "otpm": o.limits.otpm},
                    "admin_key": o.admin_key,
                    "spend_cap_tokens": o.spend_cap_tokens,
                }
                for o in self.orgs.values()
            ],
            "keys": [
                {"name": k.name, "key": k.key, "id": k.id, "org": k.org, "revoked": self.revoked.get(k.key)}
                for k in self.keys.values()
            ],
        }
