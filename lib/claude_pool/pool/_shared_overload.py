"""The 529 back-off shared by every worker of one store.

Each worker has its own gate (``OverloadGate``), closed by its own calls' 529s; without this, when
the back-off ends every worker sends its own probe, and each probe that meets another 529 spends an
attempt of the request that carried it (three workers: three times the 529s of one). So the gates
meet in the breaker store, as one more circuit breaker, on an id no account has: a 529 opens it for
everyone, the first worker whose back-off ends takes its one probe slot, and the others wait for
that probe's answer (asking the store every quarter of a second) instead of sending their own. The
probe's answer closes it; its 529 opens it again for twice as long (the breaker's own back-off).
A worker that has met no 529 learns of the opening from the breakers it reads on each admission
(:func:`closed_for`; the gate's record is one more in that read): the normal path costs no round
trip of its own.

A store that does not answer leaves each gate to itself, as it was before.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Literal

from claude_pool.breaker import BreakerEffect, BreakerParams, BreakerStore, BreakerView, State, Verdict
from claude_pool.core.errors import BackendUnavailable
from claude_pool.pool.classify import ErrorPolicy

__all__ = ["OVERLOAD_BREAKER_ID", "Claim", "SharedOverload", "closed_for"]

logger = logging.getLogger("claude_pool.pool")

#: The breaker record of Anthropic's overload; account ids never hold a colon.
OVERLOAD_BREAKER_ID = "anthropic:overloaded"
# While another worker's probe is out, how often the store is asked for its answer.
POLL_SECONDS = 0.25
# A probe slot whose worker died is given to another worker after this long.
PROBE_TTL_SECONDS = 30.0


def closed_for(view: BreakerView | None, now: float) -> float:
    """Seconds the shared gate stays closed, as its record was read at ``now`` (epoch); 0 when it
    is not (closed, never opened, or its back-off over and a probe due)."""
    if view is None or view.state is not State.OPEN or view.open_until is None:
        return 0.0
    return max(view.open_until - now, 0.0)


@dataclass(frozen=True)
class Claim:
    """What the store says when a worker's back-off ends: ``probe`` (with the slot's ``token``; None
    when the store did not answer and the worker probes alone), ``open`` (another worker's probe
    was answered), or ``wait`` ``wait_seconds`` and ask again."""

    kind: Literal["probe", "open", "wait"]
    token: str | None = None
    wait_seconds: float = 0.0


class SharedOverload:
    """``policy``: its overload back-off is the first opening's; it doubles with each failed probe,
    up to the back-off of a request's last attempt (``max_attempts``), never past the policy's
    longest: a longer one would outlast the deadlines of the requests waiting at the gates, where
    one worker alone would have probed again."""

    def __init__(self, store: BreakerStore, policy: ErrorPolicy, *, max_attempts: int) -> None:
        self._store = store
        self._policy = policy
        self._max_attempts = max_attempts

    @property
    def _params(self) -> BreakerParams:
        # read at each use: the policy may be tuned on a running pool
        first = self._policy.overload_backoff_seconds
        return BreakerParams(
            failure_threshold=1,
            timeout_seconds=first,
            half_open_max_calls=1,
            backoff_multiplier=2.0,
            max_timeout_seconds=min(
                first * 2.0 ** max(self._max_attempts - 1, 0), self._policy.max_overload_backoff_seconds
            ),
            probe_ttl_seconds=PROBE_TTL_SECONDS,
        )

    async def claim(self) -> Claim:
        token, params = uuid.uuid4().hex, self._params
        try:
            result = await self._store.allow(OVERLOAD_BREAKER_ID, params, token=token)
        except BackendUnavailable:
            return Claim("probe")
        if result.verdict is Verdict.PROBE:
            return Claim("probe", token=token)
        if result.verdict is Verdict.ALLOW:
            return Claim("open")
        # Open: until its back-off ends. Half-open with the slot taken: until the probe is answered.
        still_open = result.record.effective_state(result.now) is State.OPEN
        wait = max(result.until - result.now, 0.0) if still_open and result.until else POLL_SECONDS
        return Claim("wait", wait_seconds=min(wait, params.max_timeout_seconds))

    async def met_529(self, token: str | None) -> None:
        """A call met a 529: a probe's (``token``) opens the gate again for a longer back-off; an
        ordinary call's opens it only if it was closed (a 529 of a call sent before the opening
        changes nothing)."""
        await self._record(BreakerEffect.FAILURE, token)

    async def probe_answered(self, token: str) -> None:
        await self._record(BreakerEffect.SUCCESS, token)

    async def probe_released(self, token: str) -> None:
        """A probe that ended without a verdict (another error, given back unsent, cancelled)."""
        await self._record(BreakerEffect.NOT_COUNTED, token)

    async def _record(self, effect: BreakerEffect, token: str | None) -> None:
        try:
            await self._store.record(OVERLOAD_BREAKER_ID, effect, self._params, token=token, epoch=None)
        except BackendUnavailable as exc:  # the other workers find out by their own calls
            logger.debug("the shared overload gate was not told: %s", exc)
