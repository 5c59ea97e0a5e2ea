"""The delegation core: select, reserve, call, settle, fail over.

``Pool.delegate`` is the whole rule book of DESIGN.md 4.2-4.4 in one loop: only active accounts
whose breaker lets a call through are candidates; the capacity store picks one and reserves its
capacity in the same atomic step; the key is decrypted for the call alone; the outcome settles the
reservation, calibrates from the headers, feeds the breaker and decides whether to fail over.

Read top to bottom: the loop (``delegate``), admission (``_admit``: an account, its reservation
and its breaker permit, owned from then on by an :class:`Attempt` that settles or releases them
exactly once), then one call (``_call``: send, classify, finish). What a request carries between
attempts is its :class:`RequestState`; the pure rules live in ``_admission`` and ``_attempt``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from claude_pool.accounts.registry import AccountService
from claude_pool.breaker import (
    BreakerListener,
    BreakerView,
    CircuitBreaker,
    Denied,
    LoggingListener,
    Permit,
    open_breaker_store,
)
from claude_pool.breaker.history import BreakerHistoryListener
from claude_pool.capacity import (
    REASON_EXCLUDED,
    Candidate,
    CapacityStore,
    Reservation,
    Selection,
    open_capacity_store,
)
from claude_pool.core.cancelling import cancel_and_wait
from claude_pool.core.closing import AsyncClosing
from claude_pool.core.config import PoolConfig, Strategy
from claude_pool.core.errors import (
    AccountUnavailability,
    BackendUnavailable,
    ClaudePoolError,
    DeadlineExceeded,
    NoAccountAvailable,
    UpstreamFailure,
)
from claude_pool.core.logs import log_event
from claude_pool.pool._admission import (
    PROBE_TAKEN,
    Eligible,
    NoAccountNow,
    QueueWatch,
    StoreOutage,
    TenantAccounts,
    as_datetime,
    refusal_reasons,
    refused,
)
from claude_pool.pool._attempt import (
    CUT_BY_DEADLINE,
    Attempt,
    AttemptEnd,
    CallBudget,
    attempt_record,
    cut_by_deadline,
    left_unanswered,
    outcome_of,
)
from claude_pool.pool._calibration_probe import CalibrationProbes, probe_helps
from claude_pool.pool._call_time import CallTime
from claude_pool.pool._guessed_places import GuessedPlaces
from claude_pool.pool._overload_gate import OverloadGate
from claude_pool.pool._request import OnText, RequestState
from claude_pool.pool._shared_overload import OVERLOAD_BREAKER_ID, SharedOverload, closed_for
from claude_pool.pool.classify import ErrorPolicy, Outcome, Retry
from claude_pool.pool.directory import AccountDirectory, PoolAccount
from claude_pool.pool.listeners import AccountStatusChange, PoolListener, Selected
from claude_pool.pool.models import DelegationRequest, DelegationResult, TokenUsage
from claude_pool.pool.upstream import EventRelay, UpstreamClient, UpstreamReply
from claude_pool.runtime import Runtime

__all__ = ["Pool"]

logger = logging.getLogger("claude_pool.pool")


class Pool(AsyncClosing):
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
        # The queue bound of each organization's accounts (see QueueWatch).
        self._queues: dict[str, QueueWatch] = {}
        # Whether each account's circuit let calls through when this pool last read it: the
        # accounts an admission chooses among while it reads them again (see _try_admit).
        self._circuit_let_through: dict[str, bool] = {}
        # When a call of this pool last met a 429 on each bucket (see _wait_for_turn).
        self._cooled_at: dict[str, float] = {}
        # The requests of this pool whose place in a queue was given on a cold store's guess.
        self._guessed = GuessedPlaces(capacity)
        # Where every request waits while Anthropic answers 529 (overloaded) to everyone.
        self._overload = OverloadGate(
            shared=SharedOverload(breaker.store, self.policy, max_attempts=config.selection.max_attempts)
        )
        # Tiny calls that calibrate cold buckets (coldStart empty), and the organizations whose
        # accounts this pool has looked at once since it opened.
        self._probes = CalibrationProbes(capacity, upstream, self._decrypt, self._guessed.calibrated)
        self._looked_at: set[str] = set()
        # Since when a store (capacity or breaker) has not answered; None while it answers.
        self._store_away_since: float | None = None
        # How long an answered call takes: a request does not wait for capacity past the point
        # where the call itself could no longer finish by its deadline.
        self._call_time = CallTime()

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
            capacity=open_capacity_store(settings, cold_start=runtime.config.capacity.cold_start),
            breaker=breaker,
            upstream=UpstreamClient(base_url=settings.anthropic_base_url),
            listeners=listeners,
        )

    async def aclose(self) -> None:
        await self._probes.aclose()
        await self._guessed.aclose()
        await self.upstream.aclose()
        await self.capacity.aclose()
        await self.breaker.aclose()

    # --- the loop ---------------------------------------------------------------------------
    async def delegate(
        self, request: DelegationRequest, *, on_text: OnText | None = None, relay: EventRelay | None = None
    ) -> DelegationResult:
        """Serve ``request`` on one of its tenant's accounts, failing over as each outcome says,
        at most ``selection.max_attempts`` times; raises the last attempt's error. A
        ``passthrough`` request hands ``relay`` its stream's events as they arrive, or its whole
        answer as soon as it is read (before the settlement)."""
        state = RequestState.of(request, self.config.selection.strategy, on_text, relay)
        try:
            return await self._serve(state)
        except ClaudePoolError as error:
            # Every way a delegation ends without an answer is told, a refusal at admission included.
            await self._notify("on_failure", request, error)
            raise

    async def _serve(self, state: RequestState) -> DelegationResult:
        request = state.request
        attempts = self.config.selection.max_attempts
        while len(state.attempts) < attempts:
            last_try = len(state.attempts) == attempts - 1
            async with (
                self._overload.turn(request.timeout_left, last_try=last_try) as turn,
                await self._admit_after(state) as attempt,
            ):
                if not await self._wait_for_turn(state.request, attempt) or not self._overload.lets_through(turn):
                    continue  # its account was put aside, or a 529 closed the gate: its place is given back
                end = await self._call(state, attempt)
                turn.outcome = end.outcome
            state.attempts.append(end.record)
            await self._notify("on_attempt", request, end.record)
            if end.reply is not None:
                result = self._result(state, attempt.account, end.reply)
                await self._notify("on_result", request, result)
                return result
            state.last_error = end.outcome.error
            if end.outcome.retry is Retry.NO:
                break
            if end.outcome.retry is Retry.OTHER_ACCOUNT:
                state.tried.add(attempt.account.id)
        raise state.last_error or UpstreamFailure("no attempt could be made")

    # --- admission: an account, its capacity reserved, its breaker's permit -----------------
    async def _admit_after(self, state: RequestState) -> Attempt:
        """:meth:`_admit`, with a refusal that follows failed attempts told by what they met: when
        every account left was tried already, the last attempt's error is the cause (a connection
        error, an overload), not "already tried"."""
        try:
            return await self._admit(state)
        except NoAccountAvailable as refusal:
            last = state.last_error
            if last is None:
                raise
            if all(reason.reason == REASON_EXCLUDED for reason in refusal.reasons):
                raise last from None
            raise NoAccountAvailable(
                refusal.reasons, message=f"{refusal}\nthe last attempt failed: {last}"
            ) from last

    async def _admit(self, state: RequestState) -> Attempt:
        """An account with its capacity reserved (now, or its place in a queue) and a breaker
        permit; or :class:`NoAccountAvailable` at once, with the reasons and when to retry. No
        request polls: a queued one sleeps until its send time (``_wait_for_turn``)."""
        outage = StoreOutage()
        while True:
            try:
                found = await self._try_admit(state)
            except BackendUnavailable as exc:
                await self._ride_out(state.request, outage, exc)
                continue
            self._store_answers()
            if isinstance(found, Attempt):
                return found
            if not found.retry_at_once:
                raise refused(found.reasons, left=state.request.timeout_left())
            # a half-open account's probe slot was taken: try the others at once

    async def _ride_out(
        self, request: DelegationRequest, outage: StoreOutage, exc: BackendUnavailable
    ) -> None:
        """A store did not answer: a request with a deadline waits for it (a restart, a failover, a
        network blip), one without raises at once. One warning per outage, not one per request."""
        pause = outage.next_pause(request.timeout_left())
        if pause is None:
            raise exc
        if self._store_away_since is None:
            self._store_away_since = time.monotonic()
            log_event(
                logger, logging.WARNING, "store away; requests with a deadline wait for it", error=str(exc)
            )
        await asyncio.sleep(pause)

    def _store_answers(self) -> None:
        if self._store_away_since is not None:
            away = time.monotonic() - self._store_away_since
            self._store_away_since = None
            log_event(logger, logging.WARNING, "store back", away_seconds=round(away, 3))

    async def _try_admit(self, state: RequestState) -> Attempt | NoAccountNow:
        """One admission pass. The breakers are read while the capacity is reserved, not before:
        the choice is made among the accounts whose circuit let calls through when this pool last
        read them, which the reading then confirms. When it does not (a circuit opened or went
        half-open meanwhile, rare), the place is given back and the choice made again among the
        accounts as read."""
        tenant = TenantAccounts.of(await self.directory.all(), state.request.organization_id)
        if not tenant.active:
            return NoAccountNow(tenant.reasons)
        if state.request.organization_id not in self._looked_at and self._calibrate_cold(state, tenant.active):
            self._looked_at.add(state.request.organization_id)
        hopeful = [a.candidate for a in tenant.active if self._circuit_let_through.get(a.id, True)]
        max_wait = self._max_wait(state.request)
        selection, breakers = await self._acquire_reading_breakers(state, hopeful, tenant.active, max_wait)
        eligible = tenant.eligible(breakers)
        if [c.account_id for c in eligible.candidates] != [c.account_id for c in hopeful]:
            if selection is not None and selection.reservation is not None:
                await self.capacity.settle(selection.reservation, None, request_sent=False)
            selection = None
            if eligible.candidates:
                selection = await self._acquire(state, eligible.candidates, max_wait)
        if selection is None:
            return NoAccountNow(eligible.reasons)
        return await self._admitted(state, eligible, selection, max_wait)

    async def _acquire_reading_breakers(
        self, state: RequestState, hopeful: list[Candidate], active: list[PoolAccount], max_wait: float
    ) -> tuple[Selection | None, Mapping[str, BreakerView]]:
        """A reservation among ``hopeful`` (None when there is none to choose from) and the active
        accounts' breakers, the two store rounds at once; either failing, the other's work is
        undone (a reservation given back) before the failure is raised."""
        # The shared 529 gate's record is read with them: a worker learns of another's 529 for free.
        reading = asyncio.ensure_future(self.breaker.states([*(a.id for a in active), OVERLOAD_BREAKER_ID]))
        try:
            selection = await self._acquire(state, hopeful, max_wait) if hopeful else None
        except BaseException:
            await cancel_and_wait(reading, ignore_errors=True)  # the acquire's failure is the one told
            raise
        try:
            breakers = await reading
        except BaseException:
            if selection is not None and selection.reservation is not None:
                await asyncio.shield(self.capacity.settle(selection.reservation, None, request_sent=False))
            raise
        self._overload.closed_elsewhere(closed_for(breakers.pop(OVERLOAD_BREAKER_ID, None), time.time()))
        self._circuit_let_through.update((account_id, view.available) for account_id, view in breakers.items())
        return selection, breakers

    def _max_wait(self, request: DelegationRequest) -> float:
        """How long this request may be queued: its own bound, else the pool's adaptive one; never
        so long that the call could not finish before the deadline."""
        left = request.timeout_left()
        room = math.inf if left is None else left - self._call_time.needed
        bound = request.max_queue_seconds
        if bound is None:
            bound = self._watch(request.organization_id).bound(time.monotonic())
        return max(0.0, min(bound, room))

    def _watch(self, organization_id: str) -> QueueWatch:
        watch = self._queues.get(organization_id)
        if watch is None:
            watch = self._queues[organization_id] = QueueWatch(self.config.admission)
        return watch

    async def _wait_for_turn(self, request: DelegationRequest, attempt: Attempt) -> bool:
        """Sleep until the reservation's send time; False when, meanwhile, a call of this pool met a
        429 on the same bucket: its place was computed before upstream said to stop, and sending
        it into the cooldown would only meet another 429 (the caller gives the place back unsent
        and asks again). A request that wakes too late for its call to finish before its deadline
        gives its place back unsent rather than spend it on a call cut at the deadline; so does a
        cancelled one."""
        wait = attempt.reservation.wait_seconds
        if wait <= 0:
            return True
        queued_at = time.time()
        if await self._guessed.sleep(attempt.reservation, attempt.account.candidate, wait):
            return False  # the bucket's first calibration came: its place may now be much nearer
        cooled = self._cooled_at.get(attempt.reservation.bucket_id)
        if cooled is not None and cooled >= queued_at:
            return False
        left, needed = request.timeout_left(), self._call_time.needed
        if left is not None and left <= needed:
            raise DeadlineExceeded(
                f"the deadline is {max(left, 0):.2f}s away when its place in the queue of "
                f"{attempt.account.name!r} came, less than a call needs ({needed:.2f}s, from the "
                "recent calls); the place was given back"
            )
        return True


    async def _acquire(self, state: RequestState, candidates: list[Candidate], max_wait: float) -> Selection:
        """Choose among ``candidates`` and reserve, in one atomic step of the capacity store."""
        sticky = state.strategy is Strategy.STICKY
        return await self.capacity.acquire(
            candidates,
            state.demand,
            strategy=state.strategy,
            sticky_key=state.request.effective_sticky_key() if sticky else None,
            sticky_ttl=self.config.selection.sticky_ttl_seconds,
            lease_ttl=self.config.capacity.lease_timeout_seconds,
            exclude=state.tried,
            max_wait=max_wait,
        )

    async def _admitted(
        self, state: RequestState, eligible: Eligible, selection: Selection, max_wait: float
    ) -> Attempt | NoAccountNow:
        """The store's answer made an attempt: its reservation with the breaker's permit; or why
        not, the store's refusals added to the eligible's reasons."""
        reservation = selection.reservation
        watch = self._watch(state.request.organization_id)
        if reservation is None:
            recovery = selection.earliest_recovery
            if recovery is not None:  # the wait it would have needed: the queue it found
                watch.observe(time.monotonic(), recovery - time.time() + max_wait)
            self._calibrate_cold(state, [eligible.accounts[c.account_id] for c in eligible.candidates])
            return NoAccountNow([*eligible.reasons, *refusal_reasons(selection.refusals, eligible.accounts)])
        watch.observe(time.monotonic(), reservation.wait_seconds)
        account = eligible.accounts[reservation.account_id]
        view = eligible.breakers.get(account.id)
        # A circuit just read as closed needs no second store round for its permit.
        closed = self.breaker.closed_permit(view) if view is not None else None
        permit = closed or await self._permit(account, reservation)
        if not permit:
            # Half-open with its probe slot taken by another worker: give the capacity back.
            await self.capacity.settle(reservation, None, request_sent=False)
            state.tried.add(account.id)
            taken = AccountUnavailability(account.id, account.name, PROBE_TAKEN, as_datetime(permit.until))
            return NoAccountNow([*eligible.reasons, taken], retry_at_once=True)
        return Attempt(account, reservation, permit, capacity=self.capacity, breaker=self.breaker)

    def _calibrate_cold(self, state: RequestState, accounts: list[PoolAccount]) -> bool:
        """Where buckets start empty, have those of ``accounts`` still on that guess calibrated by a
        tiny call (see CalibrationProbes) when the request is one the guess holds back: at an
        organization's first such request, and at a refusal. Whether it looked."""
        capacity = self.config.capacity
        if capacity.cold_start != "empty" or not capacity.calibrate_from_headers:
            return False
        helped = [a for a in accounts if probe_helps(state.demand, a.candidate.limits)]
        if helped:
            self._probes.look(state.request.organization_id, helped, state.request.model)
        return bool(helped)

    def _decrypt(self, account: PoolAccount) -> str:
        return self.accounts.keyring.decrypt(account.api_key_encrypted, account_id=account.id)

    async def _permit(self, account: PoolAccount, reservation: Reservation) -> Permit | Denied:
        try:
            return await self.breaker.allow(account.id)
        except BaseException:
            # No attempt owns the reservation yet: give it back unused before raising what stopped
            # us (its failure must not hide that; the lease's expiry would then return it).
            try:
                await asyncio.shield(self.capacity.settle(reservation, None, request_sent=False))
            except BackendUnavailable as exc:
                log_event(
                    logger, logging.WARNING, "reservation not returned", account_id=account.id, error=str(exc)
                )
            raise

    # --- one call: send, classify, finish ---------------------------------------------------
    async def _call(self, state: RequestState, attempt: Attempt) -> AttemptEnd:
        """One call on the attempt's account: announce it, send it, classify its end, finish it."""
        await self._announce(state, attempt)
        budget = CallBudget.of(self.call_timeout, state.request.timeout_left())
        started = time.monotonic()
        reply, exc = await self._send(state, attempt, budget.timeout)
        ended = time.monotonic()
        latency_ms = (ended - started) * 1000
        if reply is not None:
            self._call_time.observe(ended - attempt.due)
        outcome = outcome_of(self.policy, exc, account_id=attempt.account.id)
        if exc is not None and outcome.error is None:
            # Not an upstream outcome: a bug or our caller's own cancellation. Raise it as itself
            # (the attempt releases what it holds, counting nothing).
            raise exc
        return await self._finish(attempt, outcome, reply, exc, budget, latency_ms)

    async def _announce(self, state: RequestState, attempt: Attempt) -> None:
        """Log the account chosen for this attempt and tell the listeners."""
        account, strategy = attempt.account, state.strategy.value
        number, probe = state.attempt_number, attempt.permit.probe
        log_event(
            logger,
            logging.INFO,
            "account selection",
            account_id=account.id,
            account=account.name,
            organization_id=state.request.organization_id,
            strategy=strategy,
            attempt=number,
            probe=probe or None,
        )
        wait = attempt.reservation.wait_seconds
        selected = Selected(account.id, account.name, account.organization_id, strategy, number, probe, wait)
        await self._notify("on_selection", state.request, selected)

    async def _send(
        self, state: RequestState, attempt: Attempt, timeout: float
    ) -> tuple[UpstreamReply | None, Exception | None]:
        """The upstream call, under the attempt's lease: its reply, or the exception it ended with.
        Only what is not an ``Exception`` (our caller's cancellation) propagates."""
        account = attempt.account
        api_key = self._decrypt(account)
        attempt.sending = True
        try:
            async with attempt.lease_kept(self.config.capacity.lease_timeout_seconds):
                if state.request.passthrough:
                    reply = await self.upstream.relay(
                        api_key,
                        state.body,
                        headers=state.request.anthropic_headers,
                        events=state.relay,
                        timeout=timeout,
                    )
                elif state.request.stream:
                    reply = await self.upstream.stream(
                        api_key, state.body, on_text=state.on_text, timeout=timeout
                    )
                else:
                    reply = await self.upstream.create(api_key, state.body, timeout=timeout)
        except Exception as exc:  # every upstream failure is classified by the caller, none escapes raw
            return None, exc
        finally:
            del api_key
        return reply, None

    async def _finish(
        self,
        attempt: Attempt,
        outcome: Outcome,
        reply: UpstreamReply | None,
        exc: Exception | None,
        budget: CallBudget,
        latency_ms: float,
    ) -> AttemptEnd:
        """Settle the attempt as its outcome says, then record it."""
        account = attempt.account
        if cut_by_deadline(budget, outcome):
            # The client's time-out was our caller's deadline, not the account's slowness (DESIGN
            # 4.4, last row): the breaker does not count it, and no time is left for another try.
            # Counted, a burst of callers with near deadlines would open healthy accounts' circuits.
            await self._settle(attempt, CUT_BY_DEADLINE, None, keep_reserved=True)
            raise DeadlineExceeded(
                f"the deadline passed during the call on account {account.name!r} ({account.id})"
            ) from exc
        try:
            await self._settle(attempt, outcome, reply, keep_reserved=left_unanswered(reply, exc, outcome))
        except BackendUnavailable as failure:
            if reply is None:
                raise
            # The answer is paid for: never drop it because the bookkeeping failed. The unsettled
            # reservation stays charged until its lease expires, which errs on the safe side.
            log_event(
                logger,
                logging.WARNING,
                "settlement failed; result kept",
                account_id=account.id,
                error=str(failure),
            )
        record = attempt_record(account.id, outcome, reply, latency_ms)
        if reply is None:
            log_event(
                logger,
                logging.WARNING,
                "attempt failed",
                account_id=account.id,
                outcome=outcome.kind.value,
                status=record.status_code,
                error_type=record.error_type,
                request_id=record.request_id,
            )
        return AttemptEnd(outcome, reply, record)

    async def _settle(
        self, attempt: Attempt, outcome: Outcome, reply: UpstreamReply | None, *, keep_reserved: bool
    ) -> None:
        calibrate = self.config.capacity.calibrate_from_headers
        calibrated = await attempt.settle(outcome, reply, keep_reserved=keep_reserved, calibrate=calibrate)
        if calibrated:
            self._guessed.calibrated(attempt.reservation.bucket_id)
        if outcome.cooldown_until is not None:
            self._cooled_at[attempt.reservation.bucket_id] = time.time()
        if outcome.account_status is not None:
            await self._set_account_status(attempt.account, outcome)

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

    # --- what the caller and the listeners get ----------------------------------------------
    def _result(self, state: RequestState, account: PoolAccount, reply: UpstreamReply) -> DelegationResult:
        message = reply.message
        content = list(message.get("content") or [])
        usage = message.get("usage") or {}
        return DelegationResult(
            account_id=account.id,
            account_name=account.name,
            model=str(message.get("model") or state.request.model),
            text="".join(b.get("text", "") for b in content if b.get("type") == "text"),
            content=content,
            stop_reason=message.get("stop_reason"),
            usage=TokenUsage(
                input_tokens=int(usage.get("input_tokens") or 0),
                output_tokens=int(usage.get("output_tokens") or 0),
                cache_creation_input_tokens=int(usage.get("cache_creation_input_tokens") or 0),
                cache_read_input_tokens=int(usage.get("cache_read_input_tokens") or 0),
            ),
            attempts=state.attempts,
            latency_ms=(time.monotonic() - state.started) * 1000,
            upstream_request_id=reply.request_id,
            message_id=message.get("id"),
            message=message if state.request.passthrough else None,
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
