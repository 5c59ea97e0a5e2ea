"""The account registry: register, list, show, update, disable, enable, rotate a key, delete.

Registration validates everything before anything is written; a plaintext key is held only long
enough to seal it, and only its hint ever leaves this module (``decrypt_api_key`` is for the
moment of the call, nothing else).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from claude_pool.core.config import Limits, PoolConfig
from claude_pool.core.crypto import KeyRing, fingerprint_api_key, key_hint
from claude_pool.core.errors import AccountNotFound, DuplicateAccount, InvalidInput, StorageError
from claude_pool.storage import AccountStatus, ClaudeAccount, Database, utcnow
from claude_pool.storage.queries import where_given

__all__ = [
    "API_KEY_PATTERN",
    "AccountCreate",
    "AccountService",
    "AccountUpdate",
    "AccountView",
    "effective_limits",
]

API_KEY_PATTERN = re.compile(r"sk-ant-(?!admin)[A-Za-z0-9][A-Za-z0-9_\-]{19,250}")
_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}")
_API_KEY_FIX = (
    "an Anthropic API key starts with 'sk-ant-' (e.g. sk-ant-api03-...); admin keys are not accepted here"
)


def _check_ident(value: str, what: str) -> str:
    value = value.strip()
    if not _IDENT.fullmatch(value):
        raise ValueError(
            f"{what} must be 1-64 characters of letters, digits, '_', '.', ':' or '-', starting with a letter or digit"
        )
    return value


def _check_name(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty; give the account a name such as 'team-a-primary'")
    if len(value) > 100:
        raise ValueError("must be at most 100 characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    return value


class _Input(BaseModel):
    # hide_input_in_errors: a ValidationError's text quotes the input (pydantic truncates it to its
    # first and last characters, still dozens of a key); it lives on as __context__ of the
    # InvalidInput raised from it, where anything that walks an exception chain would read it.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, hide_input_in_errors=True)


class _LimitFields(_Input):
    requests_per_minute: int | None = Field(default=None, gt=0, le=10_000_000)
    input_tokens_per_minute: int | None = Field(default=None, gt=0, le=10_000_000_000)
    output_tokens_per_minute: int | None = Field(default=None, gt=0, le=10_000_000_000)
    daily_token_budget: int | None = Field(default=None, gt=0)
    monthly_token_budget: int | None = Field(default=None, gt=0)
    monthly_spend_budget_usd: float | None = Field(default=None, gt=0)
    max_in_flight: int | None = Field(default=None, gt=0, le=100_000)
    priority: int | None = Field(default=None, ge=0, le=1_000_000)
    weight: int | None = Field(default=None, ge=1, le=1_000_000)
    capacity_group: str | None = None

    @field_validator("capacity_group")
    @classmethod
    def _group(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else _check_ident(value, "capacity_group")


class AccountCreate(_LimitFields):
    organization_id: str
    name: str
    api_key: str = Field(repr=False)
    tier: str

    @field_validator("organization_id")
    @classmethod
    def _org(cls, value: str) -> str:
        return _check_ident(value, "organization_id")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value)

    @field_validator("api_key")
    @classmethod
    def _key(cls, value: str) -> str:
        value = value.strip()
        if not API_KEY_PATTERN.fullmatch(value):
            # Never echo the value back: it may be a real key pasted in the wrong place.
            raise ValueError(f"does not look like an Anthropic API key; {_API_KEY_FIX}")
        return value


class AccountUpdate(_LimitFields):
    name: str | None = None
    tier: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _check_name(value)


class AccountView(BaseModel):
    """What may be shown of an account: never the key, only its hint."""

    id: str
    organization_id: str
    name: str
    api_key_hint: str
    tier: str
    status: str
    status_reason: str | None
    status_until: datetime | None
    priority: int
    weight: int
    capacity_group: str | None
    limits: Limits
    limit_overrides: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    key_rotated_at: datetime | None


_OVERRIDE_FIELDS = (
    "requests_per_minute",
    "input_tokens_per_minute",
    "output_tokens_per_minute",
    "daily_token_budget",
    "monthly_token_budget",
    "monthly_spend_budget_usd",
    "max_in_flight",
)


def effective_limits(account: ClaudeAccount, config: PoolConfig) -> Limits:
    """The tier's limits with the account's own overrides on top."""
    base = config.tiers.get(account.tier) or config.tiers["free"]
    overrides = {f: getattr(account, f) for f in _OVERRIDE_FIELDS if getattr(account, f) is not None}
    return base.model_copy(update=overrides)


def _first_problem(exc: ValidationError) -> InvalidInput:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "input"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif err["type"] == "missing":
        msg = "is required"
    return InvalidInput(field, msg)


class AccountService:
    def __init__(self, db: Database, keyring: KeyRing | Callable[[], KeyRing], config: PoolConfig) -> None:
        """``keyring`` may be a factory, so that listing accounts needs no ENCRYPTION_KEY."""
        self.db = db
        self._keyring = keyring
        self.config = config

    @property
    def keyring(self) -> KeyRing:
        if not isinstance(self._keyring, KeyRing):
            self._keyring = self._keyring()
        return self._keyring

    # --- views -----------------------------------------------------------------------------
    def view(self, account: ClaudeAccount) -> AccountView:
        return AccountView(
            id=account.id,
            organization_id=account.organization_id,
            name=account.name,
            api_key_hint=account.api_key_hint,
            tier=account.tier,
            status=account.status,
            status_reason=account.status_reason,
            status_until=account.status_until,
            priority=account.priority,
            weight=account.weight,
            capacity_group=account.capacity_group,
            limits=effective_limits(account, self.config),
            limit_overrides={
                f: getattr(account, f) for f in _OVERRIDE_FIELDS if getattr(account, f) is not None
            },
            created_at=account.created_at,
            updated_at=account.updated_at,
            key_rotated_at=account.key_rotated_at,
        )

    # --- commands ----------------------------------------------------------------------------
    def register(self, data: AccountCreate | dict[str, Any]) -> ClaudeAccount:
        request = self._parse(AccountCreate, data)
        self._check_tier(request.tier)
        fingerprint = fingerprint_api_key(request.api_key)
        account = ClaudeAccount(
            organization_id=request.organization_id,
            name=request.name,
            api_key_encrypted="",
            api_key_fingerprint=fingerprint,
            api_key_hint=key_hint(request.api_key),
            tier=request.tier,
            priority=request.priority if request.priority is not None else 100,
            weight=request.weight if request.weight is not None else 1,
            capacity_group=request.capacity_group,
            **{f: getattr(request, f) for f in _OVERRIDE_FIELDS},
        )
        account.api_key_encrypted = self.keyring.encrypt(request.api_key, account_id=account.id)
        with self.db.session() as session:
            self._refuse_duplicate(session, fingerprint)
            self._refuse_taken_name(session, request.organization_id, request.name)
            session.add(account)
            self._flush(session)
        return account

    def list(self, *, organization_id: str | None = None, status: str | None = None) -> list[ClaudeAccount]:
        if status is not None and status not in AccountStatus.ALL:
            raise InvalidInput(
                "status", f"unknown status {status!r}", f"one of {', '.join(AccountStatus.ALL)}"
            )
        with self.db.session() as session:
            query = where_given(
                select(ClaudeAccount),
                (ClaudeAccount.organization_id, organization_id),
                (ClaudeAccount.status, status),
            )
            return list(session.exec(query.order_by(ClaudeAccount.organization_id, ClaudeAccount.name)))

    def get(self, reference: str, *, organization_id: str | None = None) -> ClaudeAccount:
        """By id, or by a name that is unique (in ``organization_id`` when given)."""
        with self.db.session() as session:
            account = session.get(ClaudeAccount, reference)
            if account is not None and organization_id in (None, account.organization_id):
                return account
            query = select(ClaudeAccount).where(ClaudeAccount.name == reference)
            if organization_id is not None:
                query = query.where(ClaudeAccount.organization_id == organization_id)
            matches: Sequence[ClaudeAccount] = list(session.exec(query))
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            orgs = ", ".join(sorted(a.organization_id for a in matches))
            raise AccountNotFound(
                reference, f"the name is used in several organizations ({orgs}); give the id or --org"
            )
        raise AccountNotFound(reference)

    def update(self, reference: str, data: AccountUpdate | dict[str, Any]) -> ClaudeAccount:
        request = self._parse(AccountUpdate, data)
        if request.tier is not None:
            self._check_tier(request.tier)
        changes = request.model_dump(exclude_unset=True)
        account = self.get(reference)
        with self.db.session() as session:
            account = session.get(ClaudeAccount, account.id) or account
            if "name" in changes and changes["name"] != account.name:
                self._refuse_taken_name(session, account.organization_id, changes["name"])
            for field, value in changes.items():
                setattr(account, field, value)
            account.updated_at = utcnow()
            session.add(account)
            self._flush(session)
        return account

    def set_status(
        self, reference: str, status: str, *, reason: str | None = None, until: datetime | None = None
    ) -> ClaudeAccount:
        if status not in AccountStatus.ALL:
            raise InvalidInput(
                "status", f"unknown status {status!r}", f"one of {', '.join(AccountStatus.ALL)}"
            )
        account = self.get(reference)
        with self.db.session() as session:
            account = session.get(ClaudeAccount, account.id) or account
            account.status = status
            account.status_reason = reason
            account.status_until = until
            account.updated_at = utcnow()
            session.add(account)
        return account

    def disable(self, reference: str, *, reason: str | None = None) -> ClaudeAccount:
        return self.set_status(reference, AccountStatus.DISABLED, reason=reason or "disabled by an operator")

    def enable(self, reference: str) -> ClaudeAccount:
        return self.set_status(reference, AccountStatus.ACTIVE)

    def rotate_api_key(self, reference: str, new_api_key: str) -> ClaudeAccount:
        try:
            new_api_key = AccountCreate.model_validate(
                {"organization_id": "x", "name": "x", "tier": "free", "api_key": new_api_key}
            ).api_key
        except ValidationError as exc:
            raise _first_problem(exc) from None
        account = self.get(reference)
        fingerprint = fingerprint_api_key(new_api_key)
        with self.db.session() as session:
            account = session.get(ClaudeAccount, account.id) or account
            if fingerprint != account.api_key_fingerprint:
                self._refuse_duplicate(session, fingerprint)
            account.api_key_encrypted = self.keyring.encrypt(new_api_key, account_id=account.id)
            account.api_key_fingerprint = fingerprint
            account.api_key_hint = key_hint(new_api_key)
            account.key_rotated_at = account.updated_at = utcnow()
            if account.status == AccountStatus.INVALID_CREDENTIALS:
                account.status, account.status_reason = AccountStatus.ACTIVE, None
            session.add(account)
            self._flush(session)
        return account

    def delete(self, reference: str) -> ClaudeAccount:
        account = self.get(reference)
        with self.db.session() as session:
            row = session.get(ClaudeAccount, account.id)
            if row is not None:
                session.delete(row)
        return account

    def decrypt_api_key(self, account: ClaudeAccount) -> str:
        """For the moment of the call only: never log, return or store what this gives."""
        return self.keyring.decrypt(account.api_key_encrypted, account_id=account.id)

    def reencrypt_all(self) -> int:
        """Seal every key under the current ENCRYPTION_KEY (the previous one must still be given)."""
        count = 0
        with self.db.session() as session:
            for account in session.exec(select(ClaudeAccount)):
                plaintext = self.keyring.decrypt(account.api_key_encrypted, account_id=account.id)
                account.api_key_encrypted = self.keyring.encrypt(plaintext, account_id=account.id)
                session.add(account)
                count += 1
        return count

    # --- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _parse(model: type[Any], data: Any) -> Any:
        if isinstance(data, model):
            return data
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise _first_problem(exc) from None

    def _check_tier(self, tier: str) -> None:
        if tier not in self.config.tiers:
            raise InvalidInput(
                "tier",
                f"unknown tier {tier!r}",
                f"one of {', '.join(sorted(self.config.tiers))} (tiers are defined in config/multi-account.json)",
            )

    @staticmethod
    def _refuse_duplicate(session: Session, fingerprint: str) -> None:
        existing = session.exec(
            select(ClaudeAccount).where(ClaudeAccount.api_key_fingerprint == fingerprint)
        ).first()
        if existing is not None:
            raise DuplicateAccount(existing.id)

    @staticmethod
    def _refuse_taken_name(session: Session, organization_id: str, name: str) -> None:
        taken = session.exec(
            select(ClaudeAccount).where(
                ClaudeAccount.organization_id == organization_id, ClaudeAccount.name == name
            )
        ).first()
        if taken is not None:
            raise InvalidInput(
                "name",
                f"organization {organization_id} already has an account named {name!r}",
                "choose another name",
            )

    @staticmethod
    def _flush(session: Session) -> None:
        # A concurrent registration can pass the checks above; the unique constraints decide.
        try:
            session.flush()
        except IntegrityError as exc:
            session.rollback()
            text = str(exc.orig)
            field = "api_key" if "fingerprint" in text else "name"
            raise InvalidInput(
                field, "already registered (a concurrent registration won)", "list the accounts and retry"
            ) from None
        except StorageError:
            raise
