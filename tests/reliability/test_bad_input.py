"""Bad input of every kind gets a clear error and stores nothing: random config files, random CLI
arguments and standard input, wrong and previous encryption keys, tampered ciphertext, messages
past the 8 MB limit, unicode and SQL-looking names.

Example counts are fixed (``database=None``: no example database between runs), so the README's
figures are what every CI run tries."""

from __future__ import annotations

import json
import os
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from claude_pool.cli import cli
from claude_pool.core.config import PoolConfig, load_config
from claude_pool.core.crypto import KeyRing
from claude_pool.core.errors import ConfigError, DecryptionError
from claude_pool.pool import Pool
from claude_pool.pool.models import MAX_MESSAGE_BYTES, DelegationRequest
from claude_pool.records.executions import ExecutionStore
from claude_pool.simulator import Scenario
from tests.http.harness import ORG_A, serve_api
from tests.reliability.conftest import TENANT, execution_rows, make_runtime, register_keys

CONFIG_EXAMPLES = 400
CLI_EXAMPLES = 120
TAMPER_EXAMPLES = 300


def _examples(n: int) -> Any:
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# --- the config loader ---------------------------------------------------------------------------

# Real setting names (so the fuzzer reaches the validators, not only "unknown setting") and junk.
_KEYS = [
    "selection", "strategy", "maxAttempts", "stickyTtlSeconds", "capacity", "syncIntervalSeconds",
    "leaseTimeoutSeconds", "defaultInputTokenEstimate", "calibrateFromHeaders", "circuitBreaker",
    "failureThreshold", "timeoutSeconds", "halfOpenMaxCalls", "backoffMultiplier", "maxTimeoutSeconds",
    "alerts", "thresholds", "announceRecovery", "sweepIntervalSeconds", "tiers", "free", "pro",
    "enterprise", "gold", "requestsPerMinute", "inputTokensPerMinute", "outputTokensPerMinute",
    "dailyTokenBudget", "maxInFlight", "healthCheck", "intervalSeconds", "method", "model",
    "encryption", "algorithm", "defaultModel", "$schema", "", "x y", "__proto__",
]  # fmt: skip
_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["least_loaded", "round_robin", "sticky", "count_tokens", "aes-256-gcm", "fastest"])
)
_JSON = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)


def _config_file(tmp: Path, text: str) -> Path:
    path = tmp / "multi-account.json"
    path.write_text(text, encoding="utf-8")
    return path


@_examples(CONFIG_EXAMPLES)
@given(document=_JSON)
def test_random_config_json_is_either_a_valid_config_or_a_config_error_with_json_paths(
    tmp_path: Path, document: Any
) -> None:
    text = json.dumps(document, allow_nan=True)
    try:
        config = load_config(_config_file(tmp_path, text), env={})
    except ConfigError as exc:
        assert exc.problems, text
        for problem in exc.problems:
            assert problem.startswith("$"), (text, problem)  # the JSON path of the bad value
    else:
        assert isinstance(config, PoolConfig)


@_examples(CONFIG_EXAMPLES // 2)
@given(
    text=st.text(max_size=60) | st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
    overrides=st.dictionaries(
        st.lists(st.sampled_from(_KEYS), min_size=1, max_size=3).map(
            lambda p: "CLAUDE_POOL__" + "__".join(p)
        ),
        st.text(max_size=15) | _LEAVES.map(lambda v: json.dumps(v, allow_nan=True)),
        max_size=3,
    ),
)
def test_any_config_text_and_environment_overrides_give_a_config_or_a_config_error(
    tmp_path: Path, text: str, overrides: dict[str, str]
) -> None:
    try:
        config = load_config(_config_file(tmp_path, text), env=overrides)
    except ConfigError as exc:
        assert exc.problems and all(p.startswith(("$", "not valid JSON")) for p in exc.problems), exc.problems
    else:
        assert isinstance(config, PoolConfig)


# --- the CLI -----------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, encryption_key: str) -> Iterator[dict[str, str]]:
    env = {
        "CLAUDE_POOL_HOME": str(tmp_path / "home"),
        "CLAUDE_POOL_CONFIG": str(tmp_path / "no-config.json"),
        "ENCRYPTION_KEY": encryption_key,
        "LOG_FILE": str(tmp_path / "cli.log"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'home' / 'claude-pool.db'}",
    }
    cleared = {
        k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_POOL", "REDIS_URL", "DATABASE_URL"))
    }
    with mock.patch.dict(os.environ, {**cleared, **env}, clear=True):
        yield env


def _account_count(env: dict[str, str]) -> int:
    engine = sa.create_engine(env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM claude_accounts")).scalar_one())
    except sa.exc.OperationalError:
        return 0  # not created yet: nothing was stored
    finally:
        engine.dispose()


_WORDS = st.text(alphabet=string.printable + "éß名🚀\u202e\x00", max_size=30)
_NAMES = _WORDS | st.sampled_from(
    ["team-a", "Robert'); DROP TABLE claude_accounts;--", "' OR 1=1 --", "名前-🚀", " ", "a" * 101, "x\x00y"]
)
_STDIN = (
    st.sampled_from(
        [
            "",
            "\n",
            "not-a-key\n",
            "sk-ant-api03-short\n",
            "sk-ant-api03-" + "Z" * 80 + "AA\n",
            "sk-ant-api03-" + "Z" * 80 + "AA' OR 1=1 --\n",
            "sk-ant-admin01-" + "Y" * 80 + "AA\n",
        ]
    )
    | _WORDS
)


# Valid values often enough that some examples register (and must store exactly one row).
_IDENT = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
# A key never registered before (made in the test: hypothesis would draw the same one again).
_FRESH = "<a fresh key>"
_FRESH_KEY = st.just(_FRESH)


@_examples(CLI_EXAMPLES)
@given(
    org=st.one_of(_IDENT, _IDENT, _IDENT, _NAMES),
    name=st.one_of(_IDENT, _IDENT, _IDENT, _NAMES),
    tier=st.sampled_from(["free", "pro", "enterprise"] * 3 + ["gold", "", "PRO", "pro; DROP TABLE x"]),
    limits=st.lists(
        st.tuples(
            st.sampled_from(
                ["--rpm", "--itpm", "--otpm", "--max-in-flight", "--priority", "--weight", "--capacity-group"]
            ),
            st.one_of(
                st.integers(min_value=1, max_value=1000).map(str),
                st.integers(min_value=1, max_value=1000).map(str),
                st.integers(min_value=-(2**63), max_value=2**63).map(str),
                _WORDS,
            ),
        ),
        max_size=2,
    ),
    stdin=st.one_of(_FRESH_KEY, _FRESH_KEY, _FRESH_KEY, _STDIN),
)
def test_random_accounts_add_is_stored_whole_or_refused_with_a_clear_error_and_nothing_stored(
    cli_env: dict[str, str], org: str, name: str, tier: str, limits: list[tuple[str, str]], stdin: str
) -> None:
    args = ["accounts", "add", "--org", org, "--name", name, "--tier", tier]
    for option, value in limits:
        args += [option, value]
    if stdin == _FRESH:
        stdin = "sk-ant-api03-" + os.urandom(30).hex() + "AA\n"
    before = _account_count(cli_env)
    result = CliRunner().invoke(cli, args, input=stdin, catch_exceptions=True)
    after = _account_count(cli_env)
    event(f"exit {result.exit_code}")
    # never a traceback: success, a usage error (2) or our one-line error (1)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    if result.exit_code == 0:
        assert after == before + 1 and "registered account" in result.output
    else:
        assert after == before, result.output
        assert "error" in result.output.lower() or "usage" in result.output.lower(), result.output
    if len(stdin.strip()) >= 40:  # a key (or key-like input) is never echoed back, not even in part
        assert stdin.strip()[15:35] not in result.output, result.output


def test_sql_looking_and_unicode_names_are_stored_literally_and_every_table_survives(
    cli_env: dict[str, str],
) -> None:
    names = ["Robert'); DROP TABLE claude_accounts;--", "名前-🚀 équipe", "' OR '1'='1"]
    for n, name in enumerate(names):
        key = "sk-ant-api03-" + chr(ord("A") + n) * 80 + "AA\n"
        result = CliRunner().invoke(
            cli, ["accounts", "add", "--org", "org-a", "--name", name, "--tier", "pro"], input=key
        )
        assert result.exit_code == 0, result.output
    listed = CliRunner().invoke(cli, ["accounts", "list", "--json"])
    assert sorted(a["name"] for a in json.loads(listed.output)) == sorted(names)
    shown = CliRunner().invoke(cli, ["accounts", "show", "' OR '1'='1", "--org", "org-a"])
    assert shown.exit_code == 0 and json.loads(shown.output)["name"] == "' OR '1'='1"
    missing = CliRunner().invoke(cli, ["accounts", "show", "x' OR 1=1 --"])
    assert missing.exit_code == 1 and "no account" in missing.output


# --- keys: wrong, previous, tampered -----------------------------------------------------------


def _sealed(key: bytes, account_id: str = "acc-1") -> tuple[KeyRing, str, str]:
    ring = KeyRing(key)
    secret = "sk-ant-api03-" + os.urandom(40).hex()[:80] + "AA"
    return ring, secret, ring.encrypt(secret, account_id=account_id)


def test_a_wrong_key_fails_loudly_and_a_previous_key_reads_only_during_a_rotation() -> None:
    old, new, wrong = os.urandom(32), os.urandom(32), os.urandom(32)
    _, secret, stored = _sealed(old)
    with pytest.raises(DecryptionError, match="neither ENCRYPTION_KEY nor ENCRYPTION_KEY_PREVIOUS") as raised:
        KeyRing(wrong).decrypt(stored, account_id="acc-1")
    assert secret not in str(raised.value) and secret[13:25] not in repr(raised.value)
    rotating = KeyRing(new, previous=old)
    assert rotating.decrypt(stored, account_id="acc-1") == secret and rotating.needs_rotation(stored)
    resealed = rotating.encrypt(secret, account_id="acc-1")
    assert KeyRing(new).decrypt(resealed, account_id="acc-1") == secret
    with pytest.raises(DecryptionError):
        KeyRing(old).decrypt(resealed, account_id="acc-1")  # the old key alone reads nothing new
    with pytest.raises(DecryptionError, match="tampered with or copied"):
        KeyRing(old).decrypt(stored, account_id="acc-2")  # a value moved onto another row


@_examples(TAMPER_EXAMPLES)
@given(data=st.data())
def test_any_tampering_with_a_stored_key_is_a_decryption_error_never_plaintext(data: st.DataObject) -> None:
    key = os.urandom(32)
    ring, secret, stored = _sealed(key)
    alphabet = string.ascii_letters + string.digits + "-_.="
    position = data.draw(st.integers(0, len(stored) - 1), label="position")
    how = data.draw(st.sampled_from(["replace", "delete", "insert", "truncate"]), label="how")
    char = data.draw(st.sampled_from(alphabet), label="char")
    if how == "replace":
        tampered = stored[:position] + char + stored[position + 1 :]
    elif how == "delete":
        tampered = stored[:position] + stored[position + 1 :]
    elif how == "insert":
        tampered = stored[:position] + char + stored[position:]
    else:
        tampered = stored[:position]
    if tampered == stored:
        return
    try:
        opened = ring.decrypt(tampered, account_id="acc-1")
    except DecryptionError as exc:
        assert secret not in str(exc) and secret[13:25] not in str(exc)
    else:
        # base64 padding bits can change without changing the bytes: the same key, never another
        assert opened == secret


async def test_a_tampered_or_foreign_ciphertext_stops_the_delegation_sends_nothing_and_says_why(
    tmp_path: Path, anthropic_sim_factory: Any, encryption_key: str
) -> None:
    sim = anthropic_sim_factory(Scenario.uniform(accounts=1, rpm=10_000, itpm=10_000_000, otpm=1_000_000))
    runtime = make_runtime(tmp_path / "home", sim, encryption_key)
    try:
        [account_id] = register_keys(runtime, sim).values()
        with runtime.db.engine.begin() as conn:
            stored = conn.execute(
                sa.text("SELECT api_key_encrypted FROM claude_accounts WHERE id = :i"), {"i": account_id}
            ).scalar_one()
            flipped = stored[:-3] + ("A" if stored[-3] != "A" else "B") + stored[-2:]
            conn.execute(
                sa.text("UPDATE claude_accounts SET api_key_encrypted = :v WHERE id = :i"),
                {"v": flipped, "i": account_id},
            )
        store = ExecutionStore(runtime.db)
        async with Pool.open(runtime) as pool:
            request = DelegationRequest(organization_id=TENANT, message="hello", max_tokens=8)
            row, _ = store.start(request, running=True)
            with pytest.raises(DecryptionError) as raised:
                await pool.delegate(request)
            store.fail(row.id, raised.value)
            accounts = await pool.directory.all()
            [view] = await pool.capacity.view([a.candidate for a in accounts])
        assert "tampered with or copied" in str(raised.value)
        assert sim.stats().total["received"] == 0  # nothing went upstream with a bad key
        assert view.in_flight == 0  # and the reservation was given back
        [(_, status, error_type, _)] = execution_rows(runtime)
        assert (status, error_type) == ("failed", "DecryptionError")
    finally:
        runtime.close()


# --- huge messages -------------------------------------------------------------------------------


def test_a_message_over_the_8_mb_limit_is_refused_before_anything_is_stored(tmp_path: Path) -> None:
    huge = "x" * (MAX_MESSAGE_BYTES + 1)
    with pytest.raises(ValidationError, match="the limit is 8000000"):
        DelegationRequest(organization_id=TENANT, message=huge)
    with serve_api(tmp_path / "api", os.urandom(32).hex()) as api:
        admin = api.client("admin")
        api.register(admin, ORG_A, api.sim.keys[0].key, "only")
        response = admin.post("/api/orchestrator/execute", json={"organizationId": ORG_A, "message": huge})
        assert response.status_code in (400, 413, 422), response.status_code
        error = response.json()["error"]
        assert error["type"] and ("8000000" in error["message"] or "large" in error["message"]), error
        assert len(response.content) < 10_000  # the error does not echo the message back
        # unicode and SQL-looking text within the limit are served and stored as they are
        for text in ("héllo 名前 🚀 \u202e", "'; DROP TABLE orchestrator_executions; --"):
            ok = admin.post("/api/orchestrator/execute", json={"organizationId": ORG_A, "message": text})
            assert ok.status_code == 200, ok.text
        rows = ExecutionStore(api.runtime.db).list()
        assert len(rows) == 2 and all(r.status == "succeeded" for r in rows)
        assert api.sim.stats().total["received"] == 2  # the huge one never went upstream
