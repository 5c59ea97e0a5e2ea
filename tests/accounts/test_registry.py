"""Migrations and the account registry, on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from claude_pool.accounts.registry import AccountService
from claude_pool.core.config import load_config
from claude_pool.core.crypto import KeyRing
from claude_pool.core.errors import AccountNotFound, DecryptionError, DuplicateAccount, InvalidInput
from claude_pool.storage import AccountStatus, ClaudeAccount, Database

CANARY = "sk-ant-api03-CANARYzzQ9" + "k" * 60 + "W7x3"
OTHER = "sk-ant-api03-OTHERkeyP5" + "m" * 60 + "Z9y8"


@pytest.fixture
def service(db: Database) -> AccountService:
    return AccountService(db, KeyRing(os.urandom(32)), load_config(None, env={}))


def _count(db: Database, table: str = "claude_accounts") -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_migrations_take_an_empty_database_to_head(database_url: str) -> None:
    database = Database(database_url)
    try:
        assert database.current_revision() is None
        database.upgrade()
        assert database.current_revision() == database.head_revision()
        tables = set(sa.inspect(database.engine).get_table_names())
        assert {"claude_accounts", "quota_alerts", "orchestrator_executions", "breaker_transitions",
                "capacity_snapshots"} <= tables
        database.upgrade()  # a second run changes nothing
        database.downgrade("base")
        assert "claude_accounts" not in set(sa.inspect(database.engine).get_table_names())
    finally:
        database.dispose()


def test_register_stores_only_ciphertext_and_hint(service: AccountService, db: Database) -> None:
    account = service.register({"organization_id": "org-a", "name": "primary", "tier": "pro", "api_key": CANARY})
    assert account.api_key_hint == "sk-ant-…W7x3"
    with db.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM claude_accounts")).mappings().one()
    for column, value in row.items():
        assert "CANARY" not in str(value), column
    assert service.decrypt_api_key(service.get(account.id)) == CANARY


def test_view_never_carries_the_key(service: AccountService) -> None:
    account = service.register({"organization_id": "org-a", "name": "primary", "tier": "pro", "api_key": CANARY})
    dumped = service.view(account).model_dump_json()
    assert "CANARY" not in dumped and "W7x3" in dumped


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tier": "platinum"}, "tier"),
        ({"name": "   "}, "name"),
        ({"api_key": "not-a-key"}, "api_key"),
        ({"api_key": "sk-ant-admin01-" + "a" * 40}, "api_key"),
        ({"organization_id": "bad org!"}, "organization_id"),
        ({"weight": 0}, "weight"),
        ({"requests_per_minute": -1}, "requests_per_minute"),
    ],
)
def test_invalid_registration_names_the_field_and_stores_nothing(
    service: AccountService, db: Database, change: dict[str, object], field: str
) -> None:
    data = {"organization_id": "org-a", "name": "primary", "tier": "pro", "api_key": CANARY, **change}
    with pytest.raises(InvalidInput) as info:
        service.register(data)
    assert info.value.field == field
    assert "CANARY" not in str(info.value)
    assert _count(db) == 0


def test_a_duplicate_key_is_refused_by_fingerprint_and_nothing_is_stored(service: AccountService, db: Database) -> None:
    first = service.register({"organization_id": "org-a", "name": "one", "tier": "pro", "api_key": CANARY})
    with pytest.raises(DuplicateAccount) as info:
        service.register({"organization_id": "org-b", "name": "two", "tier": "free", "api_key": CANARY})
    assert first.id in str(info.value) and "CANARY" not in str(info.value)
    assert _count(db) == 1


def test_a_name_is_unique_within_its_organization(service: AccountService, db: Database) -> None:
    service.register({"organization_id": "org-a", "name": "one", "tier": "pro", "api_key": CANARY})
    with pytest.raises(InvalidInput, match="already has an account named"):
        service.register({"organization_id": "org-a", "name": "one", "tier": "pro", "api_key": OTHER})
    service.register({"organization_id": "org-b", "name": "one", "tier": "pro", "api_key": OTHER})
    assert _count(db) == 2


def test_sql_looking_and_unicode_names_are_stored_as_given(service: AccountService) -> None:
    name = "Robert'); DROP TABLE claude_accounts;-- 🚀 Zoë"
    account = service.register({"organization_id": "org-a", "name": name, "tier": "free", "api_key": CANARY})
    assert service.get(account.id).name == name


def test_list_filters_and_lookup_by_name(service: AccountService) -> None:
    a = service.register({"organization_id": "org-a", "name": "one", "tier": "pro", "api_key": CANARY})
    b = service.register({"organization_id": "org-b", "name": "two", "tier": "free", "api_key": OTHER})
    assert [x.id for x in service.list(organization_id="org-a")] == [a.id]
    service.disable(b.id)
    assert [x.id for x in service.list(status=AccountStatus.DISABLED)] == [b.id]
    assert service.get("two").id == b.id
    assert service.get("one", organization_id="org-a").id == a.id
    with pytest.raises(AccountNotFound):
        service.get("one", organization_id="org-b")


def test_update_enable_disable_and_effective_limits(service: AccountService) -> None:
    a = service.register({"organization_id": "org-a", "name": "one", "tier": "pro", "api_key": CANARY})
    service.update(a.id, {"requests_per_minute": 77, "priority": 3, "weight": 5, "capacity_group": "anthropic-org-1"})
    view = service.view(service.get(a.id))
    assert (view.limits.requests_per_minute, view.priority, view.weight, view.capacity_group) == (77, 3, 5, "anthropic-org-1")
    assert view.limits.input_tokens_per_minute == service.config.tiers["pro"].input_tokens_per_minute
    service.disable(a.id)
    assert service.get(a.id).status == AccountStatus.DISABLED
    service.enable(a.id)
    assert service.get(a.id).status == AccountStatus.ACTIVE
    with pytest.raises(InvalidInput) as info:
        service.update(a.id, {"tier": "gold"})
    assert info.value.field == "tier"


def test_rotate_the_api_key_of_an_account(service: AccountService) -> None:
    a = service.register({"organization_id": "org-a", "name": "one", "tier": "pro", "api_key": CANARY})
    rotated = service.rotate_api_key(a.id, OTHER)
    assert rotated.api_key_hint == "sk-ant-…Z9y8"
    assert service.decrypt_api_key(service.get(a.id)) == OTHER
    # the old key is free to register again, elsewhere
    service.register({"organization_id": "org-b", "name": "two", "tier": "pro", "api_key": CANARY})


def test_delete(service: AccountService, db: Database) -> None:
    a = service.register({"organization_id": "org-a", "name": "one", "tier": "pro", "api_key": CANARY})
    service.delete(a.id)
    assert _count(db) == 0
    with pytest.raises(AccountNotFound):
        service.get(a.id)


def test_a_ciphertext_moved_to_another_row_fails_loudly(service: AccountService, db: Database) -> None:
    a = service.register({"organization_id": "org-a", "name": "one", "tier": "pro", "api_key": CANARY})
    b = service.register({"organization_id": "org-a", "name": "two", "tier": "pro", "api_key": OTHER})
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE claude_accounts SET api_key_encrypted = :v WHERE id = :id"),
                     {"v": a.api_key_encrypted, "id": b.id})
    with pytest.raises(DecryptionError, match="copied from another account"):
        service.decrypt_api_key(service.get(b.id))


def test_keys_rotate_reencrypts_every_row_under_the_new_key(db: Database) -> None:
    old, new = os.urandom(32), os.urandom(32)
    config = load_config(None, env={})
    before = AccountService(db, KeyRing(old), config)
    ids = [before.register({"organization_id": "org-a", "name": f"n{i}", "tier": "pro", "api_key": key}).id
           for i, key in enumerate((CANARY, OTHER))]
    assert AccountService(db, KeyRing(new, previous=old), config).reencrypt_all() == 2
    after = AccountService(db, KeyRing(new), config)
    assert [after.decrypt_api_key(after.get(i)) for i in ids] == [CANARY, OTHER]
    with pytest.raises(DecryptionError):
        AccountService(db, KeyRing(old), config).decrypt_api_key(after.get(ids[0]))


def test_timestamps_come_back_aware_utc(service: AccountService) -> None:
    a = service.register({"organization_id": "org-a", "name": "one", "tier": "pro", "api_key": CANARY})
    assert service.get(a.id).created_at.tzinfo is not None
    assert isinstance(a, ClaudeAccount)
