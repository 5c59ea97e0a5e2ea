"""``POST /slack/events``: the pool driven from Slack (the Events API of a Slack app).

Mention the bot: ``@bot help``, ``@bot status`` (the accounts, headroom, breakers and unsent alerts
of the workspace's organization), or ``@bot <anything else>``, which is delegated through the pool
for that organization; the answer is posted in the thread and the execution recorded with the
Slack user as ``user_id`` (``slack:U0123``).

Every delivery must carry Slack's signature (``SLACK_SIGNING_SECRET``, checked by ``slack_sdk``'s
``SignatureVerifier``, which also refuses a timestamp older than five minutes): anything else gets
401 and runs nothing. The URL verification handshake is answered. Which organization a workspace
(team id) or a channel delegates for is ``SLACK_WORKSPACE_ORGS`` (a channel's entry wins);
``SLACK_ALLOWED_USERS`` (user ids) limits who may delegate. An event is acknowledged at once and
handled in the background (Slack waits three seconds); a delegation's idempotency key is the
event's id, so a delivery Slack repeats never runs twice nor answers twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from slack_sdk.signature import SignatureVerifier

from claude_pool.core.errors import ClaudePoolError, SettingsError
from claude_pool.core.logs import log_event
from claude_pool.core.redaction import redact
from claude_pool.core.settings import Settings
from claude_pool.http.context import ApiContext, get_context
from claude_pool.http.errors import ApiError
from claude_pool.maintenance.capacity_sync import snapshot_pool
from claude_pool.quota.outbox import unsent_by_table
from claude_pool.records.recorded import RecordedDelegation
from claude_pool.records.requests import delegation_request

__all__ = ["EVENTS_PATH", "SlackCommands", "router"]

EVENTS_PATH = "/slack/events"
logger = logging.getLogger("claude_pool.http.slack")
router = APIRouter(tags=["slack"])

_ORGS_VAR, _USERS_VAR = "SLACK_WORKSPACE_ORGS", "SLACK_ALLOWED_USERS"
_ORGS_FIX = (
    'set it to JSON such as {"T0123ABCD": "acme", "C0456EFGH": "beta"} or to T0123ABCD=acme;C0456EFGH=beta'
)
_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
_SEEN_MAX = 10_000
_REPLY_MAX = 3900  # Slack truncates a message's text past 4,000 characters
HELP = (
    "I run Claude through this workspace's account pool. Mention me with:\n"
    "• `help`: this message\n"
    "• `status`: the accounts, their headroom and breakers, and alerts not yet sent\n"
    "• anything else: a question for Claude, answered in this thread"
)


@dataclass(frozen=True)
class SlackCommands:
    """What ``claude-pool serve`` needs to answer Slack: the verifier and who maps to what."""

    verifier: SignatureVerifier | None
    organizations: Mapping[str, str]  # team id or channel id -> organization
    allowed_users: frozenset[str] | None  # None: everyone in a mapped workspace

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackCommands:
        secret = settings.slack_signing_secret
        users = {u.strip() for u in settings.slack_allowed_users.replace(";", ",").split(",") if u.strip()}
        return cls(
            SignatureVerifier(secret.reveal()) if secret else None,
            _parse_organizations(settings.slack_workspace_orgs),
            frozenset(users) or None,
        )

    def organization_for(self, team_id: str, channel: str) -> str | None:
        return self.organizations.get(channel) or self.organizations.get(team_id)

    def allows(self, user: str) -> bool:
        return self.allowed_users is None or user in self.allowed_users


def _parse_organizations(text: str) -> dict[str, str]:
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            raw: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(_ORGS_VAR, f"not valid JSON (line {exc.lineno})", _ORGS_FIX) from None
        if not isinstance(raw, dict) or not all(isinstance(v, str) and v for v in raw.values()):
            raise SettingsError(
                _ORGS_VAR, "the JSON must map each team or channel id to an organization", _ORGS_FIX
            )
        return {str(k).strip(): v.strip() for k, v in raw.items()}
    pairs: dict[str, str] = {}
    for n, entry in enumerate(e.strip() for e in text.replace(";", "\n").splitlines()):
        if not entry:
            continue
        where, sep, organization = entry.partition("=")
        if not sep or not where.strip() or not organization.strip():
            raise SettingsError(
                _ORGS_VAR, f"entry #{n + 1} is not <team or channel id>=<organization>", _ORGS_FIX
            )
        pairs[where.strip()] = organization.strip()
    return pairs


@dataclass(frozen=True)
class _Mention:
    event_id: str
    team_id: str
    channel: str
    user: str
    text: str
    thread_ts: str


class _SeenEvents:
    """Event ids this process already took: a repeated ``help`` or ``status`` answers once."""

    def __init__(self) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()

    def first_time(self, event_id: str) -> bool:
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > _SEEN_MAX:
            self._ids.popitem(last=False)
        return True


_seen = _SeenEvents()


def _commands(request: Request) -> SlackCommands:
    commands = getattr(request.app.state, "slack_commands", None)
    if not isinstance(commands, SlackCommands) or commands.verifier is None:
        raise ApiError(404, "not_found", "Slack commands are not configured (set SLACK_SIGNING_SECRET)")
    return commands


@router.post(EVENTS_PATH, include_in_schema=False)
async def slack_events(
    request: Request,
    ctx: Annotated[ApiContext, Depends(get_context)],
    commands: Annotated[SlackCommands, Depends(_commands)],
) -> JSONResponse:
    body = await request.body()
    assert commands.verifier is not None
    if not commands.verifier.is_valid_request(body, dict(request.headers)):
        raise ApiError(401, "unauthorized", "invalid or expired Slack signature")
    try:
        payload = json.loads(body)
    except ValueError:
        raise ApiError(400, "invalid_request", "the body is not JSON") from None
    if payload.get("type") == "url_verification":
        return JSONResponse({"challenge": str(payload.get("challenge", ""))})
    mention = _mention_of(payload)
    if mention is not None:
        ctx.spawn(_answer(ctx, commands, mention), name=f"slack-{mention.event_id}")
    return JSONResponse({"ok": True})


def _mention_of(payload: Mapping[str, Any]) -> _Mention | None:
    event = payload.get("event") or {}
    if payload.get("type") != "event_callback" or event.get("type") != "app_mention" or event.get("bot_id"):
        return None
    return _Mention(
        event_id=str(payload.get("event_id") or ""),
        team_id=str(payload.get("team_id") or ""),
        channel=str(event.get("channel") or ""),
        user=str(event.get("user") or ""),
        text=_MENTION.sub("", str(event.get("text") or "")).strip(),
        thread_ts=str(event.get("thread_ts") or event.get("ts") or ""),
    )


async def _answer(ctx: ApiContext, commands: SlackCommands, mention: _Mention) -> None:
    organization = commands.organization_for(mention.team_id, mention.channel)
    word = mention.text.split(maxsplit=1)[0].lower() if mention.text else "help"
    allowed = organization is not None and commands.allows(mention.user)
    # A delegation is kept from running twice by its idempotency key; the rest by this process.
    if not (allowed and word not in ("help", "status")) and not _seen.first_time(mention.event_id):
        return
    reply: str | None
    if organization is None:
        reply = (
            "Sorry, this Slack workspace is not connected to a claude-pool organization. "
            f"An operator can connect it in {_ORGS_VAR}."
        )
    elif not allowed:
        reply = f"Sorry <@{mention.user}>, you are not allowed to use claude-pool here."
    elif word == "help":
        reply = HELP
    elif word == "status":
        reply = await _status(ctx, organization)
    else:
        reply = await _delegate(ctx, organization, mention)
    if reply:
        await _post(ctx, mention, reply)


async def _delegate(ctx: ApiContext, organization: str, mention: _Mention) -> str | None:
    """The answer, or ``None`` when this event was delegated already (a repeated delivery)."""
    try:
        request = delegation_request(
            organization,
            user_id=f"slack:{mention.user}",
            idempotency_key=f"slack:{mention.event_id}",
            message=mention.text,
        )
    except ClaudePoolError as exc:
        return f"Sorry, I cannot send that: {exc}"
    recorded = RecordedDelegation(ctx.executions, request, notifier=ctx.slack, spawn=ctx.spawn)
    await recorded.start()
    if not recorded.created:
        return None
    outcome = await recorded.run(ctx.pool)
    if outcome.error is not None:
        return f"Sorry, that failed: {outcome.error}"
    return outcome.execution.text or "(an empty answer)"


async def _status(ctx: ApiContext, organization: str) -> str:
    rows = [r for r in await snapshot_pool(ctx.pool) if r.organization_id == organization]
    unsent = sum((await asyncio.to_thread(unsent_by_table, ctx.runtime.db, organization)).values())
    if not rows:
        return f"Organization *{organization}* has no account in the pool yet."
    lines = [f"*{organization}*: {len(rows)} account(s); {unsent} alert(s) waiting to be sent"]
    for row in rows:
        lines.append(
            f"• {row.account_name}: {row.status.replace('_', ' ')}, breaker {row.breaker_state.replace('_', '-')}, "
            f"headroom {row.headroom:.0%}, {row.in_flight} in flight"
        )
    return "\n".join(lines)


async def _post(ctx: ApiContext, mention: _Mention, text: str) -> None:
    text = redact(text)
    if len(text) > _REPLY_MAX:
        text = text[: _REPLY_MAX - 1] + "…"
    try:
        await ctx.slack.post(mention.channel, text, thread_ts=mention.thread_ts or None)
    except ClaudePoolError as exc:
        log_event(logger, logging.WARNING, "slack reply not sent", channel=mention.channel, error=str(exc))
