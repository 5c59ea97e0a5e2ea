"""Injected failures: which requests fail, how, and when.

A rule applies to the requests of its ``targets`` (key names, key secrets or organization ids; none
means everyone) whose arrival falls in ``[start, end)`` seconds after the simulator started, each with
probability ``rate``. The first matching rule wins, so order rules from specific to general.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["FAULT_KINDS", "STREAM_FAULTS", "FaultBook", "FaultKind", "FaultRule"]

FaultKind = Literal[
    "error",  # 500 api_error, 503 or 504 timeout_error (``status``)
    "overloaded",  # 529 overloaded_error
    "reset",  # the connection is closed without an answer
    "timeout",  # no answer for ``hang_s`` seconds, then the connection is closed
    "revoke",  # 401 authentication_error, or 403 permission_error with ``status: 403``
    "billing",  # 402 billing_error
    "spend_cap",  # 429 enforced_spend_limit_reached, no retry-after
    "ramp",  # 429 ramp_limit_exceeded
    "stream_error",  # streams only: an ``error`` event (overloaded_error) after the 200
    "stream_cut",  # streams only: the stream ends after the 200 with no error event and no message_stop
]
FAULT_KINDS: tuple[str, ...] = FaultKind.__args__  # type: ignore[attr-defined]

#: The kinds that only a stream meets, after its 200.
STREAM_FAULTS = frozenset({"stream_error", "stream_cut"})

_DEFAULT_STATUS = {
    "error": 500,
    "overloaded": 529,
    "revoke": 401,
    "billing": 402,
    "spend_cap": 429,
    "ramp": 429,
}
_ALLOWED_STATUS = {"error": (500, 503, 504), "revoke": (401, 403)}


@dataclass(frozen=True)
class FaultRule:
    kind: FaultKind
    rate: float = 1.0
    targets: tuple[str, ...] | None = None
    start: float = 0.0
    end: float | None = None
    status: int | None = None
    hang_s: float = 600.0
    retry_after: int = 5
    #: stream_error, stream_cut: output tokens streamed before the error event or the cut.
    after_tokens: int = 1

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(FAULT_KINDS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within [0, 1], got {self.rate}")
        status = self.effective_status
        allowed = _ALLOWED_STATUS.get(self.kind)
        if allowed is not None and status not in allowed:
            raise ValueError(f"fault {self.kind!r} takes status {allowed}, got {status}")

    @property
    def effective_status(self) -> int | None:
        return self.status if self.status is not None else _DEFAULT_STATUS.get(self.kind)

    def active(self, elapsed: float) -> bool:
        return self.start <= elapsed and (self.end is None or elapsed < self.end)

    def applies_to(self, key_name: str, key_secret: str, org_id: str) -> bool:
        t = self.targets
        return t is None or key_name in t or key_secret in t or org_id in t

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultRule:
        values = dict(data)
        # "keys" reads better in scenario files; both spellings are accepted.
        targets = values.pop("targets", None) or values.pop("keys", None)
        if isinstance(targets, str):
            targets = [targets]
        return cls(targets=tuple(targets) if targets else None, **values)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = list(self.targets) if self.targets is not None else None
        return data


class FaultBook:
    """The live list of rules and the seeded dice that decide them."""

    def __init__(self, rules: Iterable[FaultRule] = (), *, seed: int = 0) -> None:
        self.rules: list[FaultRule] = list(rules)
        self._rng = random.Random(seed)

    def replace(self, rules: Iterable[FaultRule]) -> None:
        self.rules = list(rules)

    def add(self, rule: FaultRule) -> None:
        self.rules.append(rule)

    def pick(
        self, key_name: str, key_secret: str, org_id: str, elapsed: float, *, streaming: bool
    ) -> FaultRule | None:
        if not self.rules:  # the usual case: keep it to one branch
            return None
        for rule in self.rules:
            if rule.kind in STREAM_FAULTS and not streaming:
                continue
            if not rule.active(elapsed) or not rule.applies_to(key_name, key_secret, org_id):
                continue
            if rule.rate >= 1.0 or self._rng.random() < rule.rate:
                return rule
        return None
