"""Slack notifications: quota alerts to ``SLACK_ALERT_CHANNEL``, delegation activity to
``SLACK_ACTIVITY_CHANNEL`` (DESIGN.md 4.5, 4.8), through the real ``slack_sdk`` async client.

Slack's own rules are kept here (UPSTREAM.md, Slack): about one message per second per channel,
HTTP 429 with ``Retry-After`` beyond it; Block Kit messages carry a top-level ``text`` fallback, a
header of at most 150 characters, section text of at most 3,000 and at most 10 fields. Every piece
of text that leaves for Slack goes through :func:`claude_pool.core.redaction.redact` first.

Without ``SLACK_BOT_TOKEN`` the notifier is disabled: ``post`` refuses with a
``NotificationError`` (error ``not_configured``) and ``post_activity`` does nothing, so callers
store and log, and send nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from claude_pool.core.closing import AsyncClosing
from claude_pool.core.errors import NotificationError
from claude_pool.core.logs import log_event
from claude_pool.core.redaction import redact
from claude_pool.core.settings import Settings
from claude_pool.storage import QuotaAlert

__all__ = [
    "DEFAULT_SLACK_BASE_URL",
    "HEADER_MAX",
    "MAX_FIELDS",
    "SECTION_TEXT_MAX",
    "DelegationNote",
    "SlackNotifier",
    "alert_blocks",
    "alert_text",
]

DEFAULT_SLACK_BASE_URL = "https://slack.com/api/"
HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
MAX_FIELDS = 10

logger = logging.getLogger("claude_pool.slack")
# slack_sdk formats a debug line with the request headers (the bot token among them) whenever its
# logger's level allows DEBUG; give it a logger of ours that never does.
_sdk_logger = logging.getLogger("claude_pool.slack.sdk")
_sdk_logger.setLevel(logging.INFO)


# ---- message building (pure) -----------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str) -> str:
    # Slack reads &, < and > as control characters in mrkdwn; a name like "<!channel>" must not ping.
    return redact(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": _clip(text, HEADER_MAX), "emoji": True}}


def _section(text: str, fields: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": _clip(text, SECTION_TEXT_MAX)},
    }
    if fields:
        block["fields"] = [
            {"type": "mrkdwn", "text": _clip(f"*{_mrkdwn(label)}*\n{_mrkdwn(value)}", FIELD_TEXT_MAX)}
            for label, value in list(fields)[:MAX_FIELDS]
        ]
    return block


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.2f}"


def _amount(metric: str, value: float) -> str:
    """A quota figure in its unit: dollars for spend budgets, a plain count otherwise."""
    return f"${value:,.2f}" if metric.endswith("_usd") else _number(value)


def _metric_label(metric: str) -> str:
    return metric.replace("_", " ")


def alert_text(alert: QuotaAlert, *, account_name: str | None = None) -> str:
    """The plain-text fallback (notifications, screen readers, clients without Block Kit)."""
    name = account_name or alert.account_id
    if alert.kind == "recovery":
        body = (
            f"{name} ({alert.organization_id}): {_metric_label(alert.metric)} is back below "
            f"{alert.threshold:.0%} ({_amount(alert.metric, alert.observed)}/{_amount(alert.metric, alert.limit)}, "
            f"{alert.fraction:.0%}); window {alert.window}"
        )
        return redact(f"[claude-pool] recovered: {body}")
    body = (
        f"{name} ({alert.organization_id}): {_metric_label(alert.metric)} reached "
        f"{alert.threshold:.0%} of its limit ({_amount(alert.metric, alert.observed)}/{_amount(alert.metric, alert.limit)}, "
        f"{alert.fraction:.0%}); window {alert.window}"
    )
    return redact(f"[claude-pool] quota alert: {body}")


def alert_blocks(alert: QuotaAlert, *, account_name: str | None = None) -> list[dict[str, Any]]:
    name = account_name or alert.account_id
    if alert.kind == "recovery":
        title = f"✅ Quota recovered: {name}, {_metric_label(alert.metric)}"
        summary = (
            f"*{_mrkdwn(name)}* is back below {alert.threshold:.0%} of "
            f"{_mrkdwn(_metric_label(alert.metric))} (was alerted in window `{_mrkdwn(alert.window)}`)."
        )
    else:
        icon = "🛑" if alert.threshold >= 1.0 else "⚠️"
        title = f"{icon} Quota {alert.threshold:.0%} reached: {name}, {_metric_label(alert.metric)}"
        summary = (
            f"*{_mrkdwn(name)}* used {alert.fraction:.0%} of its "
            f"{_mrkdwn(_metric_label(alert.metric))} limit in window `{_mrkdwn(alert.window)}`."
        )
    fields = [
        ("Account", name),
        ("Organization", alert.organization_id),
        ("Metric", alert.metric),
        ("Threshold", f"{alert.threshold:.0%}"),
        ("Observed / limit", f"{_amount(alert.metric, alert.observed)} / {_amount(alert.metric, alert.limit)} ({alert.fraction:.1%})"),
        ("Window", f"{alert.window} (UTC)"),
    ]
    return [_header(title), _section(summary, fields)]


@dataclass(frozen=True)
class DelegationNote:
    """A delegation activity note, as text (the fallback) and as Block Kit."""

    organization_id: str
    user_id: str | None
    account_name: str | None
    status: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    model: str | None = None

    @property
    def _tokens(self) -> str:
        return f"{self.input_tokens or 0:,} in / {self.output_tokens or 0:,} out"

    @property
    def _latency(self) -> str:
        return f"{self.latency_ms:,.0f} ms" if self.latency_ms is not None else "n/a"

    def text(self) -> str:
        return redact(
            f"[claude-pool] delegation {self.status}: org {self.organization_id}, user {self.user_id or '-'}, "
            f"account {self.account_name or '-'}, model {self.model or '-'}, {self._tokens} tokens, {self._latency}"
        )

    def blocks(self) -> list[dict[str, Any]]:
        """One section, no header (it is not an alarm)."""
        icon = "✅" if self.status == "succeeded" else "❌"
        fields = [
            ("Organization", self.organization_id),
            ("User", self.user_id or "-"),
            ("Account", self.account_name or "-"),
            ("Tokens", self._tokens),
            ("Latency", self._latency),
            ("Status", self.status),
        ]
        if self.model:
            fields.append(("Model", self.model))
        return [_section(f"{icon} Delegation *{_mrkdwn(self.status)}*", fields)]


# ---- the notifier ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    error: str
    retry_after: float | None
    status: int | None


def _header_value(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    value = getter(name) or getter(name.lower())
    if value is None and isinstance(headers, Mapping):
        value = next((v for k, v in headers.items() if str(k).lower() == name.lower()), None)
    return None if value is None else str(value)


def _describe_api_error(exc: SlackApiError) -> _Failure:
    response = exc.response
    status = getattr(response, "status_code", None)
    data = getattr(response, "data", None)
    error = data.get("error") if isinstance(data, Mapping) else None
    retry_raw = _header_value(getattr(response, "headers", None), "Retry-After")
    try:
        retry_after = float(retry_raw) if retry_raw is not None else None
    except ValueError:
        retry_after = None
    if status == 429 and not error:
        error = "ratelimited"
    return _Failure(error=str(error or f"http_{status}"), retry_after=retry_after, status=status)


class SlackNotifier(AsyncClosing):
    """Posts to Slack. ``client`` may be given (tests, a shared client); it is then the caller's to
    close. Otherwise each call opens its own short-lived aiohttp session inside the running event
    loop: a notifier outlives event loops (each Prefect task run may ``asyncio.run`` its own) and an
    aiohttp session is bound to one, while at Slack's pace of about one message per second per
    channel a new connection per message costs nothing that matters."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: AsyncWebClient | None = None,
        timeout: int = 10,
        max_retries: int = 3,
        max_wait: float = 30.0,
    ) -> None:
        self.settings = settings
        self.alert_channel = settings.slack_alert_channel
        self.activity_channel = settings.slack_activity_channel
        self.max_retries = max_retries
        self.max_wait = max_wait
        self._owns_client = client is None
        self._client: AsyncWebClient | None = client
        if client is None and settings.slack_bot_token is not None:
            self._client = AsyncWebClient(
                token=settings.slack_bot_token.reveal(),
                base_url=settings.slack_base_url or DEFAULT_SLACK_BASE_URL,
                timeout=timeout,
                logger=_sdk_logger,
                # Retries are ours: 429 waits below, anything else is left for the next sweep.
                retry_handlers=[],
            )

    def __repr__(self) -> str:
        return f"SlackNotifier(enabled={self.enabled}, alert_channel={self.alert_channel!r})"

    @property
    def enabled(self) -> bool:
        return self._client is not None

    async def post(
        self,
        channel: str,
        text: str,
        blocks: Sequence[Mapping[str, Any]] | None = None,
        *,
        max_retries: int | None = None,
        max_wait: float | None = None,
        thread_ts: str | None = None,
    ) -> str:
        """Post a message (in the thread of ``thread_ts`` when given) and return its ``ts``. A 429
        is waited out (``Retry-After`` seconds, each wait at most ``max_wait``, at most
        ``max_retries`` times); anything else that Slack refuses or a connection failure raises
        ``NotificationError`` at once."""
        if self._client is None:
            raise NotificationError("Slack is not configured (no SLACK_BOT_TOKEN)", error="not_configured")
        retries = self.max_retries if max_retries is None else max_retries
        wait_cap = self.max_wait if max_wait is None else max_wait
        text = redact(text)
        payload_blocks = _redact_blocks(blocks) if blocks else None
        attempt = 0
        while True:
            failure = await self._post_once(channel, text, payload_blocks, thread_ts)
            if isinstance(failure, str):
                return failure
            if failure.error != "ratelimited":
                raise NotificationError(
                    f"Slack refused chat.postMessage to {channel}: {failure.error}",
                    error=failure.error,
                    retry_after=failure.retry_after,
                )
            wait = failure.retry_after if failure.retry_after is not None else 1.0
            if attempt >= retries or wait > wait_cap:
                raise NotificationError(
                    f"Slack rate-limited chat.postMessage to {channel} (retry after {wait:g} s)",
                    error="ratelimited",
                    retry_after=wait,
                )
            attempt += 1
            log_event(logger, logging.INFO, "slack rate limited; waiting", channel=channel, retry_after=wait)
            await asyncio.sleep(wait)

    async def _post_once(
        self, channel: str, text: str, blocks: list[dict[str, Any]] | None, thread_ts: str | None = None
    ) -> str | _Failure:
        assert self._client is not None
        try:
            response = await self._client.chat_postMessage(
                channel=channel, text=text, blocks=blocks, thread_ts=thread_ts
            )
        except SlackApiError as exc:
            return _describe_api_error(exc)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise NotificationError(
                redact(f"Slack could not be reached: {type(exc).__name__}: {exc}"), error="connection_error"
            ) from exc
        except SlackClientError as exc:
            raise NotificationError(redact(f"Slack client error: {exc}"), error="client_error") from exc
        return str(response.get("ts") or "")

    async def post_alert(
        self, alert: QuotaAlert, *, account_name: str | None = None, max_wait: float | None = None
    ) -> str:
        """Post one quota alert (or recovery) to the alert channel; returns its ``ts``."""
        return await self.post(
            self.alert_channel,
            alert_text(alert, account_name=account_name),
            alert_blocks(alert, account_name=account_name),
            max_wait=max_wait,
        )

    async def post_activity(
        self, text: str, blocks: Sequence[Mapping[str, Any]] | None = None, *, max_wait: float | None = None
    ) -> str | None:
        """A delegation activity note; ``None`` (nothing sent) when Slack is not configured."""
        if not self.enabled:
            return None
        return await self.post(self.activity_channel, text, blocks, max_wait=max_wait)

    async def post_delegation_activity(
        self,
        *,
        organization_id: str,
        user_id: str | None,
        account_name: str | None,
        status: str,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        latency_ms: float | None = None,
        model: str | None = None,
        max_wait: float | None = None,
    ) -> str | None:
        note = DelegationNote(
            organization_id, user_id, account_name, status, input_tokens, output_tokens, latency_ms, model
        )
        return await self.post_activity(note.text(), note.blocks(), max_wait=max_wait)

    async def auth_test(self) -> dict[str, Any]:
        """Slack's view of the token (team, bot user); raises ``NotificationError`` when refused."""
        if self._client is None:
            raise NotificationError("Slack is not configured (no SLACK_BOT_TOKEN)", error="not_configured")
        try:
            response = await self._client.auth_test()
        except SlackApiError as exc:
            failure = _describe_api_error(exc)
            raise NotificationError(
                f"Slack refused auth.test: {failure.error}",
                error=failure.error,
                retry_after=failure.retry_after,
            ) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise NotificationError(
                redact(f"Slack could not be reached: {type(exc).__name__}: {exc}"), error="connection_error"
            ) from exc
        return dict(response.data) if isinstance(response.data, dict) else {}

    async def aclose(self) -> None:
        # Our own client holds no session between calls (see the class docstring); an injected
        # client's session belongs to whoever made it.
        if self._owns_client and self._client is not None and self._client.session is not None:
            await self._client.session.close()


def _redact_blocks(blocks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return redact(value)
        if isinstance(value, Mapping):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        return value

    return [walk(block) for block in blocks]
