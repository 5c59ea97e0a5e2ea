"""Who hears about the breaker. Each consumer (log, database, events, Slack) is one listener.

Every hook has a no-op default, so a listener overrides only what it cares about. Hooks run inline,
in the worker that caused the change, after the change is stored: a slow consumer (Slack) should
hand its work to a queue or a task rather than hold up the call that tripped the breaker.
A listener that raises is logged and skipped; it cannot undo or block a stored transition.
"""

from __future__ import annotations

import logging

from claude_pool.breaker.model import BreakerEffect, Denied, State, Transition

__all__ = ["BreakerListener", "LoggingListener"]


class BreakerListener:
    async def on_transition(self, transition: Transition) -> None:
        """The circuit of ``transition.account_id`` changed state. Called exactly once per
        transition across all workers: only the worker whose atomic step made it is told."""

    async def on_record(self, account_id: str, effect: BreakerEffect, *, probe: bool) -> None:
        """A result was recorded (for metrics); called whether or not it changed anything."""

    async def on_denied(self, denied: Denied) -> None:
        """A call was refused because the circuit is open, or half-open with no free probe slot."""


class LoggingListener(BreakerListener):
    """Logs every transition on ``claude_pool.breaker``: an opening at warning, the rest at info."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger("claude_pool.breaker")

    async def on_transition(self, transition: Transition) -> None:
        level = logging.WARNING if transition.to_state is State.OPEN else logging.INFO
        until = transition.open_until_datetime
        self._logger.log(
            level,
            "circuit breaker of account %s: %s -> %s (%s)%s",
            transition.account_id,
            transition.from_state.value,
            transition.to_state.value,
            transition.reason,
            f", open until {until.isoformat(timespec='seconds')}"
            if until and transition.to_state is State.OPEN
            else "",
            extra={
                "account_id": transition.account_id,
                "breaker_from": transition.from_state.value,
                "breaker_to": transition.to_state.value,
                "consecutive_failures": transition.consecutive_failures,
                "trips": transition.trips,
            },
        )
