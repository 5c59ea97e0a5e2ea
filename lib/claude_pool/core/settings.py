"""Typed settings read from the environment (the variable names of the original system).

``Settings.from_env()`` is the only place that reads ``os.environ``; everything else receives a
``Settings``. Its ``repr`` never shows a secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

__all__ = ["DEFAULT_CONFIG_PATH", "ENVIRONMENT_VARIABLES", "Secret", "Settings", "normalize_database_url"]

DEFAULT_CONFIG_PATH = Path("config/multi-account.json")

#: Every variable ``Settings.from_env`` reads: a process that caches what it built from the
#: environment (a Prefect worker's runtime) rebuilds it when any of these changes.
ENVIRONMENT_VARIABLES: tuple[str, ...] = (
    "CLAUDE_POOL_HOME",
    "DATABASE_URL",
    "REDIS_URL",
    "CLAUDE_POOL_REDIS_PREFIX",
    "ENCRYPTION_KEY",
    "ENCRYPTION_KEY_PREVIOUS",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_API_KEY_TIER",
    "ANTHROPIC_ADMIN_API_KEY",
    "ANTHROPIC_BASE_URL",
    "SLACK_BOT_TOKEN",
    "SLACK_BASE_URL",
    "SLACK_ALERT_CHANNEL",
    "SLACK_ACTIVITY_CHANNEL",
    "SLACK_SIGNING_SECRET",
    "SLACK_WORKSPACE_ORGS",
    "SLACK_ALLOWED_USERS",
    "BASE_URL",
    "LOG_LEVEL",
    "LOG_FILE",
    "CLAUDE_POOL_CONFIG",
    "RAILWAY_TOKEN",
    "PROMETHEUS_PUSHGATEWAY_URL",
)


class Secret:
    """A string that does not show itself in ``repr``, ``str``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def normalize_database_url(url: str) -> str:
    """Accept URLs as users write them; run PostgreSQL on psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    value = env.get(name, "").strip()
    return Secret(value) if value else None


@dataclass(frozen=True)
class Settings:
    home: Path = Path(".claude-pool")
    database_url: str = ""
    redis_url: str | None = None
    redis_prefix: str = "claude-pool"
    encryption_key: Secret | None = None
    encryption_key_previous: Secret | None = None
    anthropic_api_key: Secret | None = None
    # The tier ``init`` registers ANTHROPIC_API_KEY under (checked against the config's tiers there).
    anthropic_api_key_tier: str | None = None
    anthropic_admin_api_key: Secret | None = None
    anthropic_base_url: str | None = None
    slack_bot_token: Secret | None = None
    slack_base_url: str | None = None
    slack_alert_channel: str = "#eng-alerts"
    slack_activity_channel: str = "#it-test"
    # Slack commands (``/slack/events`` on ``claude-pool serve``): the app's signing secret, which
    # organization each workspace or channel delegates for, and who may (parsed by the HTTP app).
    slack_signing_secret: Secret | None = None
    slack_workspace_orgs: str = ""
    slack_allowed_users: str = ""
    base_url: str = "http://127.0.0.1:3000"
    log_level: str = "INFO"
    log_file: Path | None = Path("logs/app.log")
    config_path: Path = DEFAULT_CONFIG_PATH
    railway_token: Secret | None = field(default=None)
    # Flow workers push their pool metrics here after each task run (none when unset).
    prometheus_pushgateway_url: str | None = None

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.home / 'claude-pool.db'}")
        object.__setattr__(self, "database_url", normalize_database_url(self.database_url))

    @property
    def is_embedded(self) -> bool:
        """True when no Redis is configured: capacity and breakers live in the embedded store."""
        return self.redis_url is None

    @property
    def embedded_store_path(self) -> Path:
        return self.home / "capacity.db"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("CLAUDE_POOL_HOME") or ".claude-pool")
        log_file_raw = env.get("LOG_FILE", "logs/app.log")
        return cls(
            home=home,
            database_url=env.get("DATABASE_URL", "").strip(),
            redis_url=env.get("REDIS_URL", "").strip() or None,
            redis_prefix=env.get("CLAUDE_POOL_REDIS_PREFIX", "claude-pool").strip() or "claude-pool",
            encryption_key=_secret(env, "ENCRYPTION_KEY"),
            encryption_key_previous=_secret(env, "ENCRYPTION_KEY_PREVIOUS"),
            anthropic_api_key=_secret(env, "ANTHROPIC_API_KEY"),
            anthropic_api_key_tier=env.get("ANTHROPIC_API_KEY_TIER", "").strip() or None,
            anthropic_admin_api_key=_secret(env, "ANTHROPIC_ADMIN_API_KEY"),
            anthropic_base_url=env.get("ANTHROPIC_BASE_URL", "").strip() or None,
            slack_bot_token=_secret(env, "SLACK_BOT_TOKEN"),
            slack_base_url=env.get("SLACK_BASE_URL", "").strip() or None,
            slack_alert_channel=env.get("SLACK_ALERT_CHANNEL", "").strip() or "#eng-alerts",
            slack_activity_channel=env.get("SLACK_ACTIVITY_CHANNEL", "").strip() or "#it-test",
            slack_signing_secret=_secret(env, "SLACK_SIGNING_SECRET"),
            slack_workspace_orgs=env.get("SLACK_WORKSPACE_ORGS", "").strip(),
            slack_allowed_users=env.get("SLACK_ALLOWED_USERS", "").strip(),
            base_url=env.get("BASE_URL", "").strip() or "http://127.0.0.1:3000",
            log_level=(env.get("LOG_LEVEL", "").strip() or "INFO").upper(),
            log_file=Path(log_file_raw) if log_file_raw.strip() else None,
            config_path=Path(env.get("CLAUDE_POOL_CONFIG") or DEFAULT_CONFIG_PATH),
            railway_token=_secret(env, "RAILWAY_TOKEN"),
            prometheus_pushgateway_url=env.get("PROMETHEUS_PUSHGATEWAY_URL", "").strip() or None,
        )

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "database_url" or (f.name == "redis_url" and value):
                value = _mask_url_password(value)
            parts.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(parts)})"


def _mask_url_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user, colon, _password = creds.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"
