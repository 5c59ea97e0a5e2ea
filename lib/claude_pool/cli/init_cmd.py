"""``claude-pool init``: the set-up and health check (the old ``init-multi-account`` script).

One line per check, ``ok`` / ``warning`` / ``failed`` with the reason and the fix; exit status 1
when a required check failed. Running it twice changes nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import click

from claude_pool.cli.common import handle_errors
from claude_pool.core.config import load_config
from claude_pool.core.crypto import KeyRing, fingerprint_api_key
from claude_pool.core.errors import ClaudePoolError
from claude_pool.core.logs import configure_logging
from claude_pool.core.redaction import redact
from claude_pool.core.settings import Settings
from claude_pool.runtime import Runtime
from claude_pool.storage import ClaudeAccount

__all__ = ["CheckResult", "init", "run_checks"]

DEFAULT_ACCOUNT_ORG = "default"
DEFAULT_ACCOUNT_NAME = "default"
DEFAULT_ACCOUNT_TIER = "free"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # ok | warning | failed | skipped
    detail: str
    fix: str | None = None
    required: bool = True

    def line(self) -> str:
        text = f"[{self.status}]".ljust(10) + f"{self.name}: {self.detail}"
        if self.fix and self.status in ("failed", "warning"):
            text += f" -- fix: {self.fix}"
        return redact(text)


@dataclass(frozen=True)
class _Check:
    """One named check's possible results (a check not ``required`` never fails ``init``)."""

    name: str
    required: bool = True

    def ok(self, detail: str) -> CheckResult:
        return CheckResult(self.name, "ok", detail, required=self.required)

    def warning(self, detail: str, fix: str) -> CheckResult:
        return CheckResult(self.name, "warning", detail, fix, required=self.required)

    def failed(self, detail: str, fix: str) -> CheckResult:
        return CheckResult(self.name, "failed", detail, fix, required=self.required)

    def skipped(self, detail: str) -> CheckResult:
        return CheckResult(self.name, "skipped", detail, required=self.required)


def _check_encryption(settings: Settings) -> CheckResult:
    check = _Check("encryption key")
    try:
        ring = KeyRing.from_settings(settings)
    except ClaudePoolError as exc:
        return check.failed(str(exc), "export ENCRYPTION_KEY=$(claude-pool keys generate)")
    extra = (
        " (ENCRYPTION_KEY_PREVIOUS set: run `claude-pool keys rotate`)"
        if settings.encryption_key_previous
        else ""
    )
    return check.ok(f"AES-256-GCM key id {ring.current_key_id}{extra}")


def _check_database(rt: Runtime) -> CheckResult:
    check = _Check("database")
    try:
        rt.db.ping()
        rt.db.upgrade()
    except ClaudePoolError as exc:
        return check.failed(str(exc), "check DATABASE_URL and that the server is running")
    return check.ok(f"{rt.db.display_url} migrated to {rt.db.current_revision()}")


def _check_redis(settings: Settings) -> CheckResult:
    check = _Check("redis")
    if settings.redis_url is None:
        where = settings.embedded_store_path
        return check.ok(f"REDIS_URL not set: embedded capacity store at {where} (one machine)")
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
        version = client.info("server").get("redis_version", "?")
    except redis.RedisError as exc:
        return check.failed(f"cannot reach Redis: {exc}", "check REDIS_URL and that Redis is running")
    finally:
        client.close()
    return check.ok(f"Redis {version} answers")


def _check_slack(settings: Settings) -> CheckResult:
    check = _Check("slack", required=False)
    if settings.slack_bot_token is None:
        return check.warning(
            "SLACK_BOT_TOKEN not set: alerts are stored and logged but not sent",
            "set SLACK_BOT_TOKEN to a bot token with chat:write",
        )
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    client = WebClient(
        token=settings.slack_bot_token.reveal(),
        base_url=settings.slack_base_url or WebClient.BASE_URL,
        timeout=10,
    )
    try:
        reply = client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error", "unknown") if exc.response is not None else "unknown"
        return check.failed(f"auth.test refused: {error}", "check SLACK_BOT_TOKEN")
    except OSError as exc:
        return check.failed(f"cannot reach Slack: {exc}", "check the network or SLACK_BASE_URL")
    who = f"{reply.get('user', '?')} in {reply.get('team', '?')}"
    return check.ok(f"authenticated as {who}; alerts to {settings.slack_alert_channel}")


def _check_railway(settings: Settings) -> CheckResult:
    check = _Check("railway", required=False)
    if settings.railway_token is None:
        return check.skipped("RAILWAY_TOKEN not set")
    railway = shutil.which("railway")
    if railway is None:
        return check.warning(
            "RAILWAY_TOKEN is set but the railway CLI is not installed", "npm install -g @railway/cli"
        )
    env = {**os.environ, "RAILWAY_TOKEN": settings.railway_token.reveal()}
    try:
        done = subprocess.run(
            [railway, "whoami"], env=env, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return check.warning(f"`railway whoami` did not run: {exc}", "check the railway CLI installation")
    token = settings.railway_token.reveal()
    said = (_first_line(done.stdout) or _first_line(done.stderr)).replace(token, "***")
    if done.returncode != 0:
        return check.warning(
            f"Railway refused RAILWAY_TOKEN (`railway whoami` exit {done.returncode}: {said or 'no output'})",
            "create a new token in Railway (project settings -> Tokens) and set RAILWAY_TOKEN to it",
        )
    return check.ok(f"RAILWAY_TOKEN accepted: {said or 'railway whoami succeeded'}")


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:200]


def _default_account_tier(rt: Runtime) -> tuple[str, str] | CheckResult:
    """The tier to register ANTHROPIC_API_KEY under and where it came from, or why it is wrong."""
    tier = rt.settings.anthropic_api_key_tier
    if tier is None:
        return DEFAULT_ACCOUNT_TIER, "the default; set ANTHROPIC_API_KEY_TIER to choose"
    if tier not in rt.config.tiers:
        known = ", ".join(sorted(rt.config.tiers))
        return _Check("default account").failed(
            f"ANTHROPIC_API_KEY_TIER={tier!r} is not a tier of {rt.settings.config_path}",
            f"set ANTHROPIC_API_KEY_TIER to one of {known}, or add the tier under 'tiers' in the config",
        )
    return tier, "from ANTHROPIC_API_KEY_TIER"


def _check_default_account(rt: Runtime) -> CheckResult:
    check = _Check("default account")
    if rt.settings.anthropic_api_key is None:
        return _Check("default account", required=False).skipped("ANTHROPIC_API_KEY not set")
    chosen = _default_account_tier(rt)
    if isinstance(chosen, CheckResult):
        return chosen
    tier, source = chosen
    key = rt.settings.anthropic_api_key.reveal()
    from sqlmodel import select

    with rt.db.session() as session:
        existing = session.exec(
            select(ClaudeAccount).where(ClaudeAccount.api_key_fingerprint == fingerprint_api_key(key))
        ).first()
    if existing is not None:
        registered = f"ANTHROPIC_API_KEY already registered as account {existing.id} (tier {existing.tier})"
        if rt.settings.anthropic_api_key_tier not in (None, existing.tier):
            return check.warning(
                f"{registered}, not {tier} as ANTHROPIC_API_KEY_TIER says",
                f"claude-pool accounts update {existing.id} --tier {tier}",
            )
        return check.ok(registered)
    try:
        account = rt.accounts.register(
            {"organization_id": DEFAULT_ACCOUNT_ORG, "name": DEFAULT_ACCOUNT_NAME, "tier": tier, "api_key": key}
        )
    except ClaudePoolError as exc:
        return check.failed(str(exc), "check ANTHROPIC_API_KEY")
    return check.ok(
        f"registered ANTHROPIC_API_KEY as account {account.id} ({account.api_key_hint}), tier {tier} ({source})"
    )


def run_checks(settings: Settings) -> list[CheckResult]:
    results = [_check_encryption(settings)]
    check = _Check("config")
    try:
        config = load_config(settings.config_path)
    except ClaudePoolError as exc:
        results.append(check.failed(str(exc), f"edit {settings.config_path}"))
        return results
    results.append(check.ok(f"{settings.config_path} valid (strategy {config.selection.strategy.value})"))
    rt = Runtime(settings=settings, config=config)
    try:
        results.append(_check_database(rt))
        checks: list[Callable[[], CheckResult]] = [
            lambda: _check_redis(settings),
            lambda: _check_slack(settings),
            lambda: _check_railway(settings),
        ]
        if results[0].status == "ok" and results[-1].status == "ok":
            checks.append(lambda: _check_default_account(rt))
        results.extend(check() for check in checks)
    finally:
        rt.close()
    return results


@click.command("init")
@handle_errors
def init() -> None:
    """Check the set-up, migrate the database, register ANTHROPIC_API_KEY (tier: ANTHROPIC_API_KEY_TIER); exit 1 if anything required fails."""
    settings = Settings.from_env()
    configure_logging(settings, console=False)
    results = run_checks(settings)
    for result in results:
        click.echo(result.line())
    failed = [r for r in results if r.status == "failed" and r.required]
    if failed:
        click.echo(f"init failed: {len(failed)} required check(s) failed", err=True)
        sys.exit(1)
    click.echo("init complete: claude-pool is ready")
