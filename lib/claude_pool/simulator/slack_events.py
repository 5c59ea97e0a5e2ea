"""What Slack sends to an app's Events API endpoint, signed as Slack signs it.

Slack signs each delivery with the app's signing secret: ``X-Slack-Signature`` is ``v0=`` and the
hex HMAC-SHA256 of ``v0:{timestamp}:{body}``, with the time in ``X-Slack-Request-Timestamp``; a
delivery Slack retries carries ``X-Slack-Retry-Num`` and ``X-Slack-Retry-Reason`` and the same
``event_id``. The Slack simulator uses these to deliver events to the app under test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

__all__ = ["app_mention", "signed_delivery", "slack_signature", "url_verification"]


def slack_signature(secret: str, timestamp: int, body: bytes) -> str:
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_delivery(
    secret: str, payload: dict[str, Any], *, timestamp: int | None = None, retry_num: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one delivery of ``payload``."""
    body = json.dumps(payload).encode()
    timestamp = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": slack_signature(secret, timestamp, body),
    }
    if retry_num is not None:
        headers |= {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
    return body, headers


def app_mention(
    text: str,
    *,
    team_id: str,
    channel: str,
    user: str,
    event_id: str,
    ts: str = "1700000000.000100",
    bot_user: str = "U0SIMULATE",
    thread_ts: str | None = None,
) -> dict[str, Any]:
    """An ``app_mention`` event callback: ``@bot text`` said by ``user`` in ``channel``."""
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": f"<@{bot_user}> {text}",
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return {
        "token": "deprecated-verification-token",
        "team_id": team_id,
        "api_app_id": "A0SIMULATE",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [{"team_id": team_id, "user_id": bot_user, "is_bot": True}],
    }


def url_verification(challenge: str) -> dict[str, Any]:
    return {"token": "deprecated-verification-token", "challenge": challenge, "type": "url_verification"}
