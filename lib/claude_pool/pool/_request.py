"""What one delegation carries from attempt to attempt: ``Pool.delegate``'s own state, in one object
rather than in lists its helpers would fill for it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from claude_pool.capacity import Demand
from claude_pool.core.config import Strategy
from claude_pool.core.errors import UpstreamError
from claude_pool.pool.models import AttemptRecord, DelegationRequest
from claude_pool.pool.relay import EventRelay
from claude_pool.pool.token_estimate import estimate_input_tokens

__all__ = ["OnText", "RequestState"]

OnText = Callable[[str], Awaitable[None]]


@dataclass
class RequestState:
    request: DelegationRequest
    body: dict[str, Any]
    demand: Demand
    strategy: Strategy
    started: float  # time.monotonic() when the delegation began
    on_text: OnText | None = None
    relay: EventRelay | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)
    # Accounts this request does not try again (failed over from, or their probe slot was taken).
    tried: set[str] = field(default_factory=set)
    last_error: UpstreamError | None = None

    @classmethod
    def of(
        cls,
        request: DelegationRequest,
        default_strategy: Strategy,
        on_text: OnText | None,
        relay: EventRelay | None = None,
    ) -> RequestState:
        started = time.monotonic()
        strategy = Strategy(request.strategy or default_strategy)
        body = request.anthropic_body()
        demand = Demand(input_tokens=estimate_input_tokens(body), output_tokens=request.max_tokens)
        return cls(request, body, demand, strategy, started, on_text, relay)

    @property
    def attempt_number(self) -> int:
        """The 1-based number of the attempt about to be made."""
        return len(self.attempts) + 1
