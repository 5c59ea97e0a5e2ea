"""Simulators as context managers: a server on a free loopback port, on a thread and loop of its own.

    with simulator(Scenario.uniform(accounts=2, rpm=60)) as sim:
        client = anthropic.Anthropic(api_key=sim.keys[0].key, base_url=sim.base_url, max_retries=0)
        ...
        assert sim.stats().total["rejected_rate_limit_requests"] == 0

Every method hands its work to the server's loop, so it is safe from any thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Self

from aiohttp import web

from claude_pool.simulator.anthropic_server import AnthropicSimulator
from claude_pool.simulator.faults import FaultRule
from claude_pool.simulator.scenario import KeySpec, Limits, OrgSpec, Scenario
from claude_pool.simulator.server import BackgroundServer
from claude_pool.simulator.slack_events import signed_delivery
from claude_pool.simulator.slack_server import SlackConfig, SlackMessage, SlackSimulator
from claude_pool.simulator.state import SimulatorState, Stats

__all__ = ["RunningSimulator", "RunningSlackSimulator", "simulator", "slack_simulator"]


class _Running:
    """A simulator's app served on a free loopback port: ``start`` (or ``with``), then ``close``."""

    def __init__(self, app: Callable[[], web.Application], *, host: str, port: int) -> None:
        self._server = BackgroundServer(app, host=host, port=port)
        self.origin = self._server.origin
        self.port = self._server.port

    def start(self) -> Self:
        self._server.start()
        return self

    def close(self) -> None:
        self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()


class RunningSimulator(_Running):
    """A started Anthropic simulator. ``base_url`` is what ``anthropic.Anthropic(base_url=...)`` takes."""

    def __init__(self, scenario: Scenario | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.scenario = scenario or Scenario.uniform()
        self.state = SimulatorState(self.scenario)
        self.app = AnthropicSimulator(self.state)
        super().__init__(self.app.app, host=host, port=port)
        self.base_url = self.origin

    # ---- what it serves --------------------------------------------------------------------

    @property
    def keys(self) -> list[KeySpec]:
        return self._server.call(lambda: list(self.state.keys.values()))

    @property
    def orgs(self) -> list[OrgSpec]:
        return self._server.call(lambda: list(self.state.orgs.values()))

    def key(self, ref: str) -> KeySpec:
        """A key by name (``acct-1``) or secret."""
        return self._server.call(self.state.resolve_key, ref)

    def org_of(self, ref: str) -> OrgSpec:
        return self._server.call(lambda: self.state.orgs[self.state.resolve_key(ref).org])

    def elapsed(self) -> float:
        """Seconds since start: the clock of fault windows."""
        return self.state.elapsed()

    # ---- counts ----------------------------------------------------------------------------

    def stats(self) -> Stats:
        return self._server.call(self.state.stats)

    def reset(self, *, counters: bool = True, buckets: bool = True) -> None:
        self._server.call(self.state.reset, counters=counters, buckets=buckets)

    def requests(self, ref: str) -> list[dict[str, Any]]:
        """The last requests (at most ``REQUEST_LOG_SIZE``) the key ``ref`` (name or secret) made
        that were authenticated and parsed, oldest first: ``{request_id, method, path, query,
        headers: {anthropic-version, anthropic-beta}, body}``, ``body`` the parsed JSON (None for a GET)."""
        return self._server.call(self.state.requests_of, ref)

    def last_request(self, ref: str) -> dict[str, Any]:
        """The latest of :meth:`requests`; IndexError when the key made none."""
        return self.requests(ref)[-1]

    # ---- steering ----------------------------------------------------------------------------

    def revoke(self, ref: str, *, status: int = 401) -> None:
        self._server.call(self.state.revoke, ref, status)

    def restore(self, ref: str) -> None:
        self._server.call(self.state.restore, ref)

    def set_faults(self, rules: Iterable[FaultRule | dict[str, Any]]) -> None:
        parsed = [r if isinstance(r, FaultRule) else FaultRule.from_dict(r) for r in rules]
        self._server.call(self.state.set_faults, parsed)

    def add_fault(self, rule: FaultRule | dict[str, Any]) -> None:
        self._server.call(
            self.state.add_fault, rule if isinstance(rule, FaultRule) else FaultRule.from_dict(rule)
        )

    def clear_faults(self) -> None:
        self.set_faults([])

    def add_key(
        self, name: str, org: str, *, key: str | None = None, limits: Limits | None = None
    ) -> KeySpec:
        """Add a key to ``org`` (created with ``limits`` if it does not exist yet)."""
        from claude_pool.simulator.control import add_key_payload

        payload: dict[str, Any] = {"name": name, "org": org, "key": key}
        if limits is not None:
            payload["limits"] = {"rpm": limits.rpm, "itpm": limits.itpm, "otpm": limits.otpm}
        return self._server.call(add_key_payload, self.app, payload)

    def set_limits(self, org: str, limits: Limits) -> None:
        self._server.call(self.state.set_limits, org, limits)


class RunningSlackSimulator(_Running):
    """A started Slack simulator. ``base_url`` ends with ``/api/``, as ``WebClient`` expects."""

    def __init__(self, config: SlackConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = SlackSimulator(config)
        super().__init__(self.sim.app, host=host, port=port)
        self.base_url = self.origin + "/api/"

    @property
    def token(self) -> str:
        return self.sim.config.tokens[0]

    @property
    def messages(self) -> list[SlackMessage]:
        return self._server.call(lambda: list(self.sim.messages))

    def messages_in(self, channel: str) -> list[SlackMessage]:
        """Messages posted to ``channel``, given as an id, a name or ``#name``."""
        return [
            m
            for m in self.messages
            if channel in (m.channel, m.channel_ref, m.channel_ref.lstrip("#"))
            or channel.lstrip("#") == m.channel_ref.lstrip("#")
        ]

    def stats(self) -> dict[str, int]:
        return self._server.call(lambda: dict(self.sim.counts))

    def reset(self) -> None:
        self._server.call(self.sim.reset)

    def set_outage(self, mode: str | None) -> None:
        """``"503"``, ``"reset"`` (connections closed unanswered) or ``None``."""
        self._server.call(self.sim.set_outage, mode)

    def configure(self, *, rate_per_channel: float | None = None, burst: int | None = None) -> None:
        self._server.call(self.sim.configure, rate_per_channel=rate_per_channel, burst=burst)

    def revoke(self, token: str) -> None:
        self._server.call(self.sim.revoked.add, token)

    @property
    def signing_secret(self) -> str:
        return self.sim.config.signing_secret

    def deliver_event(
        self,
        url: str,
        payload: dict[str, Any],
        *,
        timestamp: int | None = None,
        retry_num: int | None = None,
        secret: str | None = None,
    ) -> tuple[int, bytes]:
        """POST ``payload`` to an app's Events API ``url`` as Slack does, signed with this
        workspace's signing secret (or ``secret``); returns the answer's status and body."""
        import urllib.error
        import urllib.request

        body, headers = signed_delivery(
            secret or self.signing_secret, payload, timestamp=timestamp, retry_num=retry_num
        )
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
                return int(reply.status), bytes(reply.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())


@contextmanager
def simulator(
    scenario: Scenario | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[RunningSimulator]:
    sim = RunningSimulator(scenario, host=host, port=port).start()
    try:
        yield sim
    finally:
        sim.close()


@contextmanager
def slack_simulator(
    config: SlackConfig | None = None, *, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> Iterator[RunningSlackSimulator]:
    """``options`` are ``SlackConfig`` fields, for short: ``slack_simulator(rate_per_channel=50, burst=50)``."""
    if options:
        config = SlackConfig(**options) if config is None else SlackConfig(**{**config.__dict__, **options})
    sim = RunningSlackSimulator(config, host=host, port=port).start()
    try:
        yield sim
    finally:
        sim.close()
