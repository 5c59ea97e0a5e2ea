""".env.example is the operator's checklist: it names exactly the variables the code reads, and a
copy of it, once the required key is filled in, is a working environment."""

from __future__ import annotations

import re
from pathlib import Path

from claude_pool.core.config import load_config
from claude_pool.core.settings import ENVIRONMENT_VARIABLES, Settings
from claude_pool.http.auth import ApiTokens
from tests.plugins.environment import RecordingEnvironment

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")
# A variable read by name anywhere in the code: env.get("X"), os.environ.get("X"), os.environ["X"].
DIRECT_READ = re.compile(r"""(?:\benv|\benviron)(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]*)["']""")


def _example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        match = ASSIGNMENT.match(line)
        if match:
            assert match[1] not in values, f"{match[1]} is listed twice"
            values[match[1]] = match[2]
    return values


def _read_by_the_code() -> set[str]:
    reads = RecordingEnvironment()
    Settings.from_env(reads)
    ApiTokens.from_env(reads)
    names = set(reads.names)
    for folder in ("lib", "tasks", "flows"):
        for path in (ROOT / folder).rglob("*.py"):
            names.update(DIRECT_READ.findall(path.read_text(encoding="utf-8")))
    return names


def test_env_example_lists_exactly_the_variables_the_code_reads() -> None:
    listed = set(_example())
    read = _read_by_the_code()
    assert set(ENVIRONMENT_VARIABLES) <= read
    assert read - listed == set(), "read by the code but missing from .env.example"
    assert listed - read == set(), "in .env.example but read by no code"


def test_every_variable_in_env_example_has_a_comment_above_it() -> None:
    lines = (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines):
        if ASSIGNMENT.match(line):
            assert n > 0 and lines[n - 1].startswith("# "), f"{line.split('=')[0]} has no comment"


def test_a_copy_of_env_example_with_a_key_loads_as_documented(encryption_key: str) -> None:
    env = {**_example(), "ENCRYPTION_KEY": encryption_key}
    settings = Settings.from_env(env)
    assert settings.database_url.endswith(".claude-pool/claude-pool.db")
    assert settings.is_embedded
    assert settings.slack_alert_channel == "#eng-alerts"
    assert settings.anthropic_api_key is None and settings.anthropic_api_key_tier is None
    assert settings.railway_token is None
    assert len(ApiTokens.from_env(env)) == 0
    assert load_config(ROOT / settings.config_path, env=env).tiers


def test_the_readme_environment_table_names_every_variable() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Environment", 1)[1].split("\n\n", 2)[1]
    missing = [name for name in _example() if f"`{name}`" not in table]
    assert missing == []
