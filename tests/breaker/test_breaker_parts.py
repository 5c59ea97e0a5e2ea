"""The pieces around the contract: logging, the factory, backend failures, the clock."""

from __future__ import annotations

import logging
import time
import types
from importlib import resources
from pathlib import Path

import pytest

import claude_pool.breaker as breaker_pkg
from claude_pool.breaker import (
    BreakerListener,
    BreakerStore,
    CircuitBreaker,
    Denied,
    EmbeddedBreakerStore,
    LoggingListener,
    Permit,
    RedisBreakerStore,
    State,
    Transition,
    open_breaker_store,
)
from claude_pool.core.config import BreakerConfig
from claude_pool.core.errors import BackendUnavailable
from claude_pool.core.settings import Settings
from claude_pool.pool.classify import BreakerEffect
from tests.capacity.conftest import FakeClock

from .conftest import T0, StoreFactory


def test_all_is_complete_and_importable() -> None:
    public = {name for name in dir(breaker_pkg) if not name.startswith("_")}
    modules = {n for n in public if isinstance(getattr(breaker_pkg, n), types.ModuleType)} | {"annotations"}
    assert set(breaker_pkg.__all__) == public - modules
    for name in breaker_pkg.__all__:
        assert getattr(breaker_pkg, name) is not None


def test_one_lua_script_per_store_method_named_after_it() -> None:
    folder = resources.files("claude_pool.breaker") / "lua"
    scripts = {f.name.removesuffix(".lua") for f in folder.iterdir() if f.name.endswith(".lua")}
    assert scripts == {"_breaker_lib"} | (BreakerStore.__abstractmethods__ - {"aclose"})


def _transition(to_state: State) -> Transition:
    return Transition("acct-a", State.CLOSED if to_state is State.OPEN else State.HALF_OPEN, to_state,
                      "why", 5, 1_800_000_300.0 if to_state is State.OPEN else None, 1_800_000_000.0, 1)


async def test_logging_listener_warns_on_opening_informs_otherwise(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="claude_pool.breaker")
    listener = LoggingListener()
    await listener.on_transition(_transition(State.OPEN))
    await listener.on_transition(_transition(State.CLOSED))
    opened, closed = caplog.records
    assert opened.name == "claude_pool.breaker" and opened.levelno == logging.WARNING
    assert "acct-a" in opened.getMessage() and "closed -> open" in opened.getMessage()
    assert "open until 2027-01-15T08:05:00+00:00" in opened.getMessage()
    assert closed.levelno == logging.INFO and "half_open -> closed" in closed.getMessage()


async def test_a_listener_overrides_only_the_hooks_it_needs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The base's hooks do nothing, so a listener that overrides one hook hears that one and the
    breaker calls the others without a failure (a failing hook would be logged and skipped)."""

    class TransitionsOnly(BreakerListener):
        def __init__(self) -> None:
            self.moves: list[tuple[State, State]] = []

        async def on_transition(self, transition: Transition) -> None:
            self.moves.append((transition.from_state, transition.to_state))

    caplog.set_level(logging.DEBUG, logger="claude_pool.breaker")
    listener = TransitionsOnly()
    async with EmbeddedBreakerStore(tmp_path / "b.db") as store:
        cb = CircuitBreaker(store, BreakerConfig(failure_threshold=1), listeners=[BreakerListener(), listener])
        permit = await cb.allow("a")
        assert isinstance(permit, Permit)
        opened = await cb.record("a", BreakerEffect.FAILURE, permit=permit)  # on_record, on_transition
        denied = await cb.allow("a")  # on_denied
    assert opened is not None and isinstance(denied, Denied)
    assert listener.moves == [(State.CLOSED, State.OPEN)]
    assert [r.getMessage() for r in caplog.records if "listener" in r.getMessage()] == []
    base = BreakerListener()
    assert await base.on_transition(_transition(State.OPEN)) is None
    assert await base.on_record("acct-a", BreakerEffect.FAILURE, probe=False) is None
    assert await base.on_denied(Denied("acct-a", State.OPEN, None, "circuit open")) is None


async def test_factory_picks_redis_when_configured(redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    store = open_breaker_store(Settings(home=tmp_path, redis_url=redis_url, redis_prefix=redis_prefix))
    async with store:
        assert isinstance(store, RedisBreakerStore)
        assert (await store.views(["a"]))["a"].state is State.CLOSED


async def test_factory_embedded_lives_in_home(tmp_path: Path) -> None:
    store = open_breaker_store(Settings(home=tmp_path / "home"))
    async with store:
        assert isinstance(store, EmbeddedBreakerStore)
        assert store.path == tmp_path / "home" / "breakers.db"
        cb = CircuitBreaker(store, BreakerConfig(failure_threshold=1))
        permit = await cb.allow("a")
        assert isinstance(permit, Permit)
        await cb.record("a", BreakerEffect.FAILURE, permit=permit)
    assert store.path.exists()


async def test_redis_down_raises_backend_unavailable() -> None:
    store = RedisBreakerStore.from_url("redis://127.0.0.1:1/0", prefix="nowhere")
    async with store:
        with pytest.raises(BackendUnavailable, match="redis"):
            await CircuitBreaker(store).allow("a")
        with pytest.raises(BackendUnavailable):
            await store.views(["a"])


async def test_unusable_embedded_file_raises_backend_unavailable(tmp_path: Path) -> None:
    (tmp_path / "breakers.db").mkdir()  # a directory where the database file should be
    async with EmbeddedBreakerStore(tmp_path / "breakers.db") as store:
        with pytest.raises(BackendUnavailable, match="embedded"):
            await CircuitBreaker(store).allow("a")


async def test_closed_embedded_store_refuses(tmp_path: Path) -> None:
    store = EmbeddedBreakerStore(tmp_path / "b.db")
    await store.aclose()
    await store.aclose()
    with pytest.raises(BackendUnavailable, match="closed"):
        await store.views(["a"])


async def test_the_clock_is_injectable(make_store: StoreFactory, clock: FakeClock) -> None:
    config = BreakerConfig(failure_threshold=2, timeout_seconds=300, max_timeout_seconds=3600)
    cb = CircuitBreaker(make_store(), config, probe_ttl_seconds=600)
    for _ in range(2):
        permit = await cb.allow("a")
        assert isinstance(permit, Permit)
        await cb.record("a", BreakerEffect.FAILURE, permit=permit)
    clock.advance(299.0)
    denied = await cb.allow("a")
    assert isinstance(denied, Denied) and denied.until == T0 + 300
    assert denied.until_datetime is not None and denied.until_datetime.year == 2027
    clock.advance(1.0)
    probe = await cb.allow("a")
    assert isinstance(probe, Permit) and probe.probe
    reopened = await cb.record("a", BreakerEffect.FAILURE, permit=probe)
    assert reopened is not None and reopened.at == clock.now and reopened.open_until == clock.now + 600
    view = (await cb.states(["a"]))["a"]
    assert (view.state, view.trips, view.consecutive_failures) == (State.OPEN, 2, 3)


@pytest.mark.parametrize("backend", ["embedded", "redis"])
async def test_without_a_clock_time_is_the_real_one(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """No clock injected: the embedded store reads the machine's, Redis its server's ``TIME``."""
    if backend == "redis":
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        store: BreakerStore = RedisBreakerStore.from_url(url, prefix=prefix)
    else:
        store = EmbeddedBreakerStore(tmp_path / "b.db")
    async with store:
        before = time.time()
        opened = await CircuitBreaker(store).force_open("a", "test", seconds=60)
        after = time.time()
    assert opened is not None and opened.open_until == pytest.approx(opened.at + 60)
    # the server's clock may be a little off the test's: a second is far below any real drift alarm
    assert before - 1 <= opened.at <= after + 1


async def test_permit_must_match_the_account(tmp_path: Path) -> None:
    async with EmbeddedBreakerStore(tmp_path / "b.db") as store:
        cb = CircuitBreaker(store)
        permit = await cb.allow("a")
        assert isinstance(permit, Permit)
        with pytest.raises(ValueError, match="recorded against"):
            await cb.record("b", BreakerEffect.SUCCESS, permit=permit)
