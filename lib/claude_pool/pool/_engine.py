"""The delegation core: select, reserve, call, settle, fail over.

``Pool.delegate`` is the whole rule book of DESIGN.md 4.2-4.4 in one loop: only active accounts
whose breaker lets a call through are candidates; the capacity store picks one and reserves its
capacity in the same atomic step; the key is decrypted for the call alone; the outcome settles the
reservation, calibrates from the headers, feeds the breaker and decides whether to fail over.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

from claude_pool.accounts.registry import AccountService
from claude_pool.breaker import BreakerListener, CircuitBreaker, LoggingListener, Permit, open_breaker_store
from claude_pool.breaker.history import BreakerHistoryListener
from claude_pool.capacity import (
    Candidate,
    CapacityStore,
    Demand,
    RateLimitSnapshot,
    Usage,
    open_capacity_store,
)
from claude_pool.core.config import PoolConfig, Strategy
from claude_pool.core.errors import (
    AccountUnavailability,
    BackendUnavailable,
    DeadlineExceeded,
    NoAccountAvailable,
    UpstreamError,
    UpstreamFailure,
)
from claude_pool.core.logs import log_event
from claude_pool.core.repeating import repeating
from claude_pool.pool.classify import BreakerEffect, ErrorPolicy, Outcome, OutcomeKind, Retry
from claude_pool.pool.directory import AccountDirectory, PoolAccount
from claude_pool.pool.listeners import AccountStatusChange, PoolListener, Selected
from claude_pool.pool.models import AttemptRecord, DelegationRequest, DelegationResult, TokenUsage
from claude_pool.pool.token_estimate import estimate_input_tokens
from claude_pool.pool.upstream import StreamBrokeAfterStart, UpstreamClient, UpstreamReply
from claude_pool.runtime import Runtime
from claude_pool.storage import AccountStatus

__all__ = ["Pool"]

logger = logging.getLogger("claude_pool.pool")

_PROBE_TAKEN = "half-open: its probe slot is taken by another call"

# Longest single sleep while waiting for capacity: short enough to notice a recovery that the
# refusals could not predict (a breaker closing, an account enabled elsewhere).
_MAX_WAIT_STEP = 5.0


def _dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


class Pool:
    def __init__(
        self,
        *,
        config: PoolConfig,
        accounts: AccountService,
        directory: AccountDirectory,
        capacity: CapacityStore,
        breaker: CircuitBreaker,
        upstream: UpstreamClient,
        listeners: Sequence[PoolListener] = (),
        policy: ErrorPolicy | None = None,
        call_timeout: float = 600.0,
    ) -> None:
        self.config = config
        self.accounts = accounts
        self.directory = directory
        self.capacity = capacity
        self.breaker = breaker
        self.upstream = upstream
        self.listeners = list(listeners)
        self.policy = policy or ErrorPolicy()
        self.call_timeout = call_timeout
        # The waiting turn (see _choose); asyncio's Lock wakes its waiters in order.
        self._waiting = asyncio.Lock()
        # A running average of how long an answered call takes: a request does not wait for
        # capacity past the point where the call itself could no longer finish by its deadline.
        self._typical_call_seconds = 0.0

    @classmethod
    def open(
        cls,
        runtime: Runtime,
        *,
        listeners: Sequence[PoolListener] = (),
        breaker_listeners: Sequence[BreakerListener] = (),
    ) -> Pool:
        """A pool on the runtime's database and stores (Redis when ``REDIS_URL`` is set, else the
        embedded store); breaker transitions are logged and stored in ``breaker_transitions``."""
        settings = runtime.settings
        breaker = CircuitBreaker(
            open_breaker_store(settings),
            runtime.config.circuit_breaker,
            listeners=[LoggingListener(), BreakerHistoryListener(runtime.db), *breaker_listeners],
        )
        return cls(
            config=runtime.config,
            accounts=runtime.accounts,
            directory=AccountDirectory(runtime.db, runtime.config),
            capacity=open_capacity_store(settings),
            breaker=breaker,
            upstream=UpstreamClient(base_url=settings.anthropic_base_url),
            listeners=listeners,
        )

    async def aclose(self) -> None:
        await self.upstream.aclose()
        await self.capacity.close()
        await self.breaker.aclose()

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # --- the loop ---------------------------------------------------------------------------
    async def delegate(
        self, request: DelegationRequest, *, on_text: Callable[[str], Awaitable[None]] | None = None
    ) -> DelegationResult:
        started = time.monotonic()
        strategy = Strategy(request.strategy or self.config.selection.strategy)
        body = request.anthropic_body()
        demand = Demand(input_tokens=estimate_input_tokens(body), output_tokens=request.max_tokens)
        attempts: list[AttemptRecord] = []
        tried: set[str] = set()
        last_error: BaseException | None = None
        while len(attempts) < self.config.selection.max_attempts:
            chosen = await self._choose(request, demand, strategy, tried, len(attempts) + 1)
            account, reservation, permit = chosen
            try:
                outcome, reply, attempt = await self._call(
                    request, body, account, reservation, permit, on_text
                )
            except DeadlineExceeded:
                raise  # _call settled the reservation and the permit before raising it
            except BaseException:
                # Our own caller gave up (cancellation): not the account's fault, nothing counted.
                await asyncio.shield(self._release(reservation, permit, sent=True))
                raise
            attempts.append(attempt)
            await self._notify("on_attempt", request, attempt)
            if reply is not None:
                result = self._result(request, account, reply, attempts, started)
                await self._notify("on_result", request, result)
                return result
            last_error = outcome.error
            if outcome.retry is Retry.NO:
                break
            if outcome.retry is Retry.OTHER_ACCOUNT:
                tried.add(account.id)
            elif outcome.backoff_seconds:
                await self._sleep_within_deadline(request, outcome.backoff_seconds)
        error = last_error or UpstreamFailure("no attempt could be made")
        await self._notify("on_failure", request, error)
        raise error

    async def _choose(
        self, request: DelegationRequest, demand: Demand, strategy: Strategy, tried: set[str], attempt: int
    ) -> tuple[PoolAccount, Any, Permit]:
        """An account with its capacity reserved and a breaker permit; waits for a recovery when the
        request has a deadline, else raises :class:`NoAccountAvailable` with the reasons.

        Waiting requests of this process queue for one turn: only the head polls the stores, the
        others wait behind it in order. Polling each on its own (all wake at the same predicted
        recovery, one wins) costs a round trip per waiter per admission, which on a loaded worker
        delayed calls past their deadlines."""
        turn = False  # whether this request holds the waiting turn of this process
        try:
            while True:
                by_id, candidates, reasons = await self._candidates(request)
                if candidates:
                    chosen = await self._reserve(
                        request, demand, strategy, tried, attempt, by_id, candidates, reasons
                    )
                    if chosen is not None:
                        return chosen
                    if any(r.reason == _PROBE_TAKEN for r in reasons):
                        continue  # a half-open account's probe slot was taken: try the others at once
                if not turn:
                    self._recovery_wait(request, reasons)  # raises now if the deadline cannot be met
                    await self._take_turn(request, reasons)
                    turn = True
                    continue  # capacity may have come back while it queued: try again at once
                await asyncio.sleep(self._recovery_wait(request, reasons))
        finally:
            if turn:
                self._waiting.release()

    async def _candidates(
        self, request: DelegationRequest
    ) -> tuple[dict[str, PoolAccount], list[Candidate], list[AccountUnavailability]]:
        """The tenant's accounts that may serve now, and why each other one may not."""
        # A tenant's requests run on its own accounts only: never on another's keys or spend.
        accounts = [a for a in await self.directory.all() if a.organization_id == request.organization_id]
        if not accounts:
            raise NoAccountAvailable(
                [],
                message=f"organization {request.organization_id!r} has no account in the pool; register one first",
            )
        reasons: list[AccountUnavailability] = []
        active = []
        for acc in accounts:
            if acc.status == AccountStatus.ACTIVE:
                active.append(acc)
            else:
                reasons.append(
                    AccountUnavailability(
                        acc.id, acc.name, acc.status.replace("_", " "), _dt(acc.status_until)
                    )
                )
        views = await self.breaker.states([a.id for a in active]) if active else {}
        candidates = []
        for acc in active:
            view = views.get(acc.id)
            if view is not None and not view.available:
                reasons.append(AccountUnavailability(acc.id, acc.name, "circuit open", _dt(view.open_until)))
            else:
                candidates.append(acc.candidate)
        return {a.id: a for a in accounts}, candidates, reasons

    async def _reserve(
        self,
        request: DelegationRequest,
        demand: Demand,
        strategy: Strategy,
        tried: set[str],
        attempt: int,
        by_id: dict[str, PoolAccount],
        candidates: list[Candidate],
        reasons: list[AccountUnavailability],
    ) -> tuple[PoolAccount, Any, Permit] | None:
        """Choose and reserve in one atomic step, then take the breaker's permit; ``None`` (with
        the refusals added to ``reasons``) when no candidate can serve now."""
        selection = await self.capacity.acquire(
            candidates,
            demand,
            strategy=strategy,
            sticky_key=request.effective_sticky_key() if strategy is Strategy.STICKY else None,
            sticky_ttl=self.config.selection.sticky_ttl_seconds,
            lease_ttl=self.config.capacity.lease_timeout_seconds,
            exclude=tried,
        )
        reservation = selection.reservation
        if reservation is None:
            for refusal in selection.refusals:
                acc = by_id[refusal.account_id]
                reasons.append(AccountUnavailability(acc.id, acc.name, refusal.reason, _dt(refusal.until)))
            return None
        account = by_id[reservation.account_id]
        permit = await self.breaker.allow(account.id)
        if not permit:
            # Half-open with its probe slot taken by another worker: give the capacity back.
            await self.capacity.settle(reservation, None, request_sent=False)
            reasons.append(AccountUnavailability(account.id, account.name, _PROBE_TAKEN, _dt(permit.until)))
            tried.add(account.id)
            return None
        assert isinstance(permit, Permit)
        log_event(
            logger,
            logging.INFO,
            "account selection",
            account_id=account.id,
            account=account.name,
            organization_id=request.organization_id,
            strategy=strategy.value,
            attempt=attempt,
            probe=permit.probe or None,
        )
        selected = Selected(
            account.id, account.name, account.organization_id, strategy.value, attempt, permit.probe
        )
        await self._notify("on_selection", request, selected)
        return account, reservation, permit

    def _recovery_wait(self, request: DelegationRequest, reasons: list[AccountUnavailability]) -> float:
        """Seconds to sleep before trying again; raises :class:`NoAccountAvailable` when the request
        has no deadline, no account will recover by waiting, or not before the deadline."""
        error = NoAccountAvailable(reasons)
        left = request.timeout_left()
        if left is None or error.earliest_recovery is None:
            raise error
        wait = error.earliest_recovery.timestamp() - time.time()
        # Capacity that comes back too late for the call to finish would only be spent on a call
        # timed out at the deadline (and charged upstream all the same).
        if wait > left - self._typical_call_seconds:
            raise self._too_late(reasons, left)
        return min(max(wait, 0.01), _MAX_WAIT_STEP)

    async def _take_turn(self, request: DelegationRequest, reasons: list[AccountUnavailability]) -> None:
        left = request.timeout_left()
        try:
            async with asyncio.timeout(left):
                await self._waiting.acquire()
        except TimeoutError:
            raise self._too_late(reasons, 0.0) from None

    @staticmethod
    def _too_late(reasons: list[AccountUnavailability], left: float) -> NoAccountAvailable:
        return NoAccountAvailable(
            reasons,
            message=f"no account can serve before the deadline (in {max(left, 0):.1f}s):\n"
            + "\n".join(f"  - {r}" for r in reasons),
        )

    async def _sleep_within_deadline(self, request: DelegationRequest, seconds: float) -> None:
        left = request.timeout_left()
        if left is not None and left < seconds:
            raise DeadlineExceeded(f"the deadline passes before the next attempt (back-off {seconds:.1f}s)")
        await asyncio.sleep(seconds)

    def _lease_kept(self, account: PoolAccount, reservation: Any) -> AbstractAsyncContextManager[None]:
        """Renew the call's lease every third of its period while the call runs: a long stream
        must not look like a dead worker's call, have its slot reclaimed and given to another."""
        ttl = self.config.capacity.lease_timeout_seconds

        async def renew() -> bool:
            try:
                if await self.capacity.renew(reservation, ttl) is None:
                    log_event(logger, logging.WARNING, "lease lost during the call", account_id=account.id)
                    return False
            except BackendUnavailable as exc:  # the next renewal may get through
                log_event(logger, logging.WARNING, "lease renewal failed", account_id=account.id, error=str(exc))
            return True

        return repeating(ttl / 3, renew, name=f"lease-{reservation.reservation_id}")

    async def _call(
        self,
        request: DelegationRequest,
        body: dict[str, Any],
        account: PoolAccount,
        reservation: Any,
        permit: Permit,
        on_text: Callable[[str], Awaitable[None]] | None,
    ) -> tuple[Outcome, UpstreamReply | None, AttemptRecord]:
        started = time.monotonic()
        api_key = self.accounts.keyring.decrypt(account.api_key_encrypted, account_id=account.id)
        timeout = self.call_timeout
        left = request.timeout_left()
        deadline_bound = left is not None and left <= timeout
        if left is not None:
            timeout = max(min(timeout, left), 0.1)
        reply: UpstreamReply | None = None
        exc: BaseException | None = None
        try:
            async with self._lease_kept(account, reservation):
                if request.stream:
                    reply = await self.upstream.stream(api_key, body, on_text=on_text, timeout=timeout)
                else:
                    reply = await self.upstream.create(api_key, body, timeout=timeout)
        except StreamBrokeAfterStart as broken:
            exc = broken
        except Exception as caught:  # every upstream failure is classified below, none escapes raw
            exc = caught
        finally:
            del api_key
        latency_ms = (time.monotonic() - started) * 1000
        if reply is not None:
            self._typical_call_seconds += 0.1 * (latency_ms / 1000 - self._typical_call_seconds)
        outcome = self.policy.classify(
            exc.cause if isinstance(exc, StreamBrokeAfterStart) else exc, account_id=account.id
        )
        if isinstance(exc, StreamBrokeAfterStart):
            # Failed after the first byte: report it as failed, never retry a half-sent answer.
            outcome = Outcome(
                kind=outcome.kind,
                breaker=outcome.breaker,
                retry=Retry.NO,
                error=outcome.error or UpstreamFailure(str(exc), account_id=account.id),
            )
        if exc is not None and outcome.error is None:
            # Not an upstream outcome: a bug or our caller's own cancellation. Raise it as itself.
            await self._release(reservation, permit, sent=True)
            raise exc
        # No answer came back (a time-out, a dropped connection, a stream cut after it began): the
        # call may have been admitted upstream, which charged its input and max_tokens then and
        # refunds only what it did not generate, when it finishes, without us. Refunding here would
        # leave our view above upstream's, and the next reservations would meet 429s.
        unanswered = reply is None and (
            isinstance(exc, StreamBrokeAfterStart)
            or (isinstance(outcome.error, UpstreamError) and outcome.error.status_code is None)
        )
        if (
            deadline_bound
            and isinstance(outcome.error, UpstreamError)
            and outcome.error.error_type == "timeout"
        ):
            # The client's time-out was our caller's deadline, not the account's slowness (DESIGN
            # 4.4, last row): the breaker does not count it, and no time is left for another try.
            # Counted, a burst of callers with near deadlines would open healthy accounts' circuits.
            cancelled = Outcome(kind=OutcomeKind.CANCELLED, breaker=BreakerEffect.NOT_COUNTED, retry=Retry.NO)
            await self._settle(account, reservation, permit, cancelled, None, keep_reserved=True)
            raise DeadlineExceeded(
                f"the deadline passed during the call on account {account.name!r} ({account.id})"
            ) from exc
        try:
            await self._settle(account, reservation, permit, outcome, reply, keep_reserved=unanswered)
        except BackendUnavailable as exc:
            if reply is None:
                raise
            # The answer is paid for: never drop it because the bookkeeping failed. The unsettled
            # reservation stays charged until its lease expires, which errs on the safe side.
            log_event(
                logger,
                logging.WARNING,
                "settlement failed; result kept",
                account_id=account.id,
                error=str(exc),
            )
        error = outcome.error
        attempt = AttemptRecord(
            account_id=account.id,
            outcome=outcome.kind.value,
            status_code=error.status_code if isinstance(error, UpstreamError) else (200 if reply else None),
            error_type=error.error_type if isinstance(error, UpstreamError) else None,
            request_id=error.request_id
            if isinstance(error, UpstreamError)
            else (reply.request_id if reply else None),
            latency_ms=latency_ms,
        )
        if reply is None:
            log_event(
                logger,
                logging.WARNING,
                "attempt failed",
                account_id=account.id,
                outcome=outcome.kind.value,
                status=attempt.status_code,
                error_type=attempt.error_type,
                request_id=attempt.request_id,
            )
        return outcome, reply, attempt

    async def _settle(
        self,
        account: PoolAccount,
        reservation: Any,
        permit: Permit,
        outcome: Outcome,
        reply: UpstreamReply | None,
        *,
        keep_reserved: bool = False,
    ) -> None:
        """``keep_reserved``: the call's fate upstream is unknown; refund nothing of its reservation
        (an over-charge costs a little throughput once, an under-charge costs 429s)."""
        headers = reply.headers if reply is not None else (outcome.error.headers if outcome.error else {})
        usage = None
        if reply is not None:
            u = reply.message.get("usage") or {}
            usage = Usage(
                input_tokens=int(u.get("input_tokens") or 0) + int(u.get("cache_creation_input_tokens") or 0),
                output_tokens=int(u.get("output_tokens") or 0),
            )
        elif keep_reserved:
            usage = Usage(reservation.demand.input_tokens, reservation.demand.output_tokens)
        # A connection that never opened sent nothing; any other failure may have been counted upstream.
        await self.capacity.settle(reservation, usage, request_sent=True)
        if headers and self.config.capacity.calibrate_from_headers:
            snapshot = RateLimitSnapshot.from_headers(headers)
            if snapshot is not None:
                await self.capacity.calibrate(reservation.bucket_id, snapshot)
        if outcome.cooldown_until is not None:
            await self.capacity.cool_down(reservation.bucket_id, outcome.cooldown_until)
        await self.breaker.record(account.id, outcome.breaker, permit=permit)
        if outcome.account_status is not None:
            await self._set_account_status(account, outcome)

    async def _release(self, reservation: Any, permit: Permit, *, sent: bool) -> None:
        await self.capacity.settle(reservation, None, request_sent=sent)
        await self.breaker.record(permit.account_id, BreakerEffect.NOT_COUNTED, permit=permit)

    async def _set_account_status(self, account: PoolAccount, outcome: Outcome) -> None:
        status = outcome.account_status
        assert status is not None
        reason = str(outcome.error) if outcome.error else status
        await asyncio.to_thread(
            self.accounts.set_status, account.id, status, reason=reason[:500], until=outcome.status_until
        )
        self.directory.invalidate()
        change = AccountStatusChange(
            account.id, account.name, account.organization_id, status, reason, outcome.status_until
        )
        log_event(
            logger,
            logging.WARNING,
            "account set aside",
            account_id=account.id,
            account=account.name,
            status=status,
        )
        await self._notify("on_account_status", change)

    def _result(
        self,
        request: DelegationRequest,
        account: PoolAccount,
        reply: UpstreamReply,
        attempts: list[AttemptRecord],
        started: float,
    ) -> DelegationResult:
        message = reply.message
        content = list(message.get("content") or [])
        usage = message.get("usage") or {}
        return DelegationResult(
            account_id=account.id,
            account_name=account.name,
            model=str(message.get("model") or request.model),
            text="".join(b.get("text", "") for b in content if b.get("type") == "text"),
            content=content,
            stop_reason=message.get("stop_reason"),
            usage=TokenUsage(
                input_tokens=int(usage.get("input_tokens") or 0),
                output_tokens=int(usage.get("output_tokens") or 0),
                cache_creation_input_tokens=int(usage.get("cache_creation_input_tokens") or 0),
                cache_read_input_tokens=int(usage.get("cache_read_input_tokens") or 0),
            ),
            attempts=attempts,
            latency_ms=(time.monotonic() - started) * 1000,
            upstream_request_id=reply.request_id,
            message_id=message.get("id"),
        )

    async def _notify(self, method: str, *args: Any) -> None:
        for listener in self.listeners:
            try:
                await getattr(listener, method)(*args)
            except Exception:  # a sink's failure must not fail the delegation it reports on
                logger.exception("listener %s.%s failed", type(listener).__name__, method)

    @staticmethod
    def new_request_id() -> str:
        return uuid.uuid4().hex
