"""The Slack Web API methods the project uses, with Slack's errors, per-channel rate limit and outages.

Routes: ``POST /api/chat.postMessage`` (JSON or form), ``POST /api/auth.test``; any other method
answers ``unknown_method``. Control, under ``/_sim/``:
    GET  /_sim/messages                 every message received, oldest first
    GET  /_sim/stats                    counts (posted, ratelimited, errors, outage)
    POST /_sim/reset                    forget messages, counts and rate-limit state
    POST /_sim/outage  {mode}           "503", "reset" (close connections) or null to end it
    POST /_sim/config  {rate_per_channel?, burst?}
    POST /_sim/revoke  {token}          the token then answers token_revoked
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from aiohttp import web

from claude_pool.simulator.buckets import TokenBucket
from claude_pool.simulator.control import Action, add_control_routes
from claude_pool.simulator.server import reset_connection

__all__ = ["DEFAULT_SLACK_TOKEN", "SlackConfig", "SlackMessage", "SlackSimulator"]

# A fake token the simulator accepts; it grants nothing anywhere else.
DEFAULT_SLACK_TOKEN = "xoxb-0000000000-0000000000000-claudepoolsimulatortoken"  # noqa: S105
OutageMode = Literal["503", "reset"]


@dataclass(frozen=True)
class SlackConfig:
    tokens: tuple[str, ...] = (DEFAULT_SLACK_TOKEN,)
    #: name -> id of the channels that exist; None accepts any channel (ids derived from names).
    channels: dict[str, str] | None = None
    #: channel names or ids the bot has joined; others answer not_in_channel. None = all of them.
    member_of: tuple[str, ...] | None = None
    #: sustained messages per second per channel, and how many may come at once.
    rate_per_channel: float = 1.0
    burst: int = 1
    team: str = "claude-pool-sim"
    team_id: str = "T0SIMULATE"
    #: the app's signing secret: events the simulator delivers are signed with it.
    signing_secret: str = "sim-signing-secret-5f1c0b7d9e3a4c2b"  # noqa: S105 - a simulator's


@dataclass
class SlackMessage:
    channel: str
    text: str | None
    blocks: list[Any] | None
    ts: str
    thread_ts: str | None = None
    channel_ref: str = ""
    args: dict[str, Any] = field(default_factory=dict)


def _channel_id(name: str) -> str:
    return "C" + hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:10].upper()


def _looks_like_id(ref: str) -> bool:
    return ref[:1] in ("C", "G", "D") and ref[1:].isalnum() and ref.isupper()


class SlackSimulator:
    def __init__(self, config: SlackConfig | None = None, *, clock: Any = time.monotonic) -> None:
        self.config = config or SlackConfig()
        self.clock = clock
        self.messages: list[SlackMessage] = []
        self.counts: Counter[str] = Counter()
        self.outage: OutageMode | None = None
        self.revoked: set[str] = set()
        self._buckets: dict[str, TokenBucket] = {}
        self._seq = itertools.count(1)

    # ---- control -----------------------------------------------------------------------------

    def reset(self) -> None:
        self.messages.clear()
        self.counts.clear()
        self._buckets.clear()

    def set_outage(self, mode: OutageMode | None) -> None:
        if mode not in (None, "503", "reset"):
            raise ValueError("outage mode is '503', 'reset' or None")
        self.outage = mode

    def configure(self, *, rate_per_channel: float | None = None, burst: int | None = None) -> None:
        from dataclasses import replace

        changes: dict[str, Any] = {}
        if rate_per_channel is not None:
            changes["rate_per_channel"] = float(rate_per_channel)
        if burst is not None:
            changes["burst"] = int(burst)
        self.config = replace(self.config, **changes)
        self._buckets.clear()

    # ---- helpers -----------------------------------------------------------------------------

    def _resolve_channel(self, ref: str) -> str | None:
        channels = self.config.channels
        name = ref.lstrip("#")
        if channels is None:
            return ref if _looks_like_id(ref) else _channel_id(name)
        if name in channels:
            return channels[name]
        return ref if ref in channels.values() else None

    def _is_member(self, ref: str, channel_id: str) -> bool:
        member_of = self.config.member_of
        if member_of is None:
            return True
        # Memberships may be written as names or ids; compare ids so either spelling of the channel works.
        return channel_id in {self._resolve_channel(m) for m in member_of} or ref.lstrip("#") in member_of

    def _rate_limited(self, channel_id: str) -> int | None:
        """Whole seconds to wait if this channel is over its rate, else None (and the message counts)."""
        cfg = self.config
        now = self.clock()
        bucket = self._buckets.get(channel_id)
        if bucket is None:
            # TokenBucket is per-minute; express the per-second rate in its units, capacity = burst.
            bucket = TokenBucket(max(1, cfg.burst), now)
            bucket.rate = cfg.rate_per_channel
            self._buckets[channel_id] = bucket
        bucket.refill(now)
        if bucket.has(1):
            bucket.take(1)
            return None
        return max(1, math.ceil(bucket.seconds_until(1)))

    def _ts(self) -> str:
        n = next(self._seq)
        return f"{int(time.time())}.{n % 1_000_000:06d}"

    @staticmethod
    def _reply(
        data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.Response(
            status=status, body=json.dumps(data).encode(), content_type="application/json", headers=headers
        )

    async def _args_and_token(self, request: web.Request) -> tuple[dict[str, Any], str | None]:
        if request.content_type == "application/json":
            raw = await request.read()
            args: dict[str, Any] = json.loads(raw) if raw else {}
        else:
            args = dict(await request.post())
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else args.pop("token", None)
        return args, token

    def _auth_error(self, token: str | None) -> str | None:
        if not token:
            return "not_authed"
        if token in self.revoked:
            return "token_revoked"
        if token not in self.config.tokens:
            return "invalid_auth"
        return None

    # ---- routes ------------------------------------------------------------------------------

    async def method(self, request: web.Request) -> web.StreamResponse:
        self.counts["received"] += 1
        if self.outage == "reset":
            self.counts["outage"] += 1
            reset_connection(request)
            return web.Response(status=503)
        if self.outage == "503":
            self.counts["outage"] += 1
            return self._reply({"ok": False, "error": "fatal_error"}, status=503)
        args, token = await self._args_and_token(request)
        error = self._auth_error(token)
        if error is not None:
            return self._error(error)
        name = request.match_info["method"]
        if name == "auth.test":
            return self._reply(
                {
                    "ok": True,
                    "url": f"https://{self.config.team}.slack.com/",
                    "team": self.config.team,
                    "user": "claude-pool",
                    "team_id": "T0SIMULATE",
                    "user_id": "U0SIMULATE",
                    "bot_id": "B0SIMULATE",
                }
            )
        if name == "chat.postMessage":
            return self._post_message(args)
        return self._error("unknown_method")

    def _error(self, error: str) -> web.Response:
        self.counts[f"error_{error}"] += 1
        return self._reply({"ok": False, "error": error})

    def _post_message(self, args: dict[str, Any]) -> web.Response:
        ref = str(args.get("channel") or "")
        if not ref:
            return self._error("channel_not_found")
        blocks = args.get("blocks")
        if isinstance(blocks, str):  # form posts carry blocks as a JSON string
            blocks = json.loads(blocks)
        text = args.get("text")
        if not text and not blocks:
            return self._error("no_text")
        channel_id = self._resolve_channel(ref)
        if channel_id is None:
            return self._error("channel_not_found")
        if not self._is_member(ref, channel_id):
            return self._error("not_in_channel")
        wait = self._rate_limited(channel_id)
        if wait is not None:
            self.counts["ratelimited"] += 1
            return self._reply(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(wait)}
            )
        ts = self._ts()
        thread_ts = args.get("thread_ts")
        self.messages.append(SlackMessage(channel_id, text, blocks, ts, thread_ts, ref, args))
        self.counts["posted"] += 1
        message = {
            "type": "message",
            "text": text or "",
            "user": "U0SIMULATE",
            "bot_id": "B0SIMULATE",
            "ts": ts,
        }
        if blocks:
            message["blocks"] = blocks
        if thread_ts:
            message["thread_ts"] = thread_ts
        return self._reply({"ok": True, "channel": channel_id, "ts": ts, "message": message})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/{method}", self.method)
        self._add_control(app)
        return app

    def _add_control(self, app: web.Application) -> None:
        def configure(data: dict[str, Any]) -> dict[str, Any]:
            self.configure(rate_per_channel=data.get("rate_per_channel"), burst=data.get("burst"))
            return {"config": asdict(self.config)}

        reads = {"messages": lambda: [asdict(m) for m in self.messages], "stats": lambda: dict(self.counts)}
        actions: dict[str, Action] = {
            "reset": lambda _: self.reset(),
            "outage": lambda data: self.set_outage(data.get("mode")),
            "config": configure,
            "revoke": lambda data: self.revoked.add(str(data["token"])),
        }
        add_control_routes(app, reads=reads, actions=actions)
