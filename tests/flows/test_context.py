"""What a task builds from the environment is rebuilt when any variable it was built from changes."""

from __future__ import annotations

import pytest

from claude_pool.core.settings import ENVIRONMENT_VARIABLES, Settings
from claude_pool_tasks.context import runtime
from tests.plugins.environment import RecordingEnvironment


def test_the_listed_variables_are_the_ones_settings_read() -> None:
    reads = RecordingEnvironment()
    Settings.from_env(reads)
    assert reads.names == set(ENVIRONMENT_VARIABLES)


def test_the_runtime_is_rebuilt_when_a_variable_changes(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, encryption_key: str
) -> None:
    monkeypatch.setenv("CLAUDE_POOL_HOME", str(tmp_path))
    monkeypatch.setenv("ENCRYPTION_KEY", encryption_key)
    monkeypatch.setenv("LOG_FILE", "")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("SLACK_ACTIVITY_CHANNEL", "#one")
    first = runtime()
    assert runtime() is first
    monkeypatch.setenv("SLACK_ACTIVITY_CHANNEL", "#two")  # not in the list tasks kept before
    assert runtime() is not first and runtime().settings.slack_activity_channel == "#two"
