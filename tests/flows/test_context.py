"""What a task builds from the environment is rebuilt when any variable it was built from changes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from claude_pool.core.settings import ENVIRONMENT_VARIABLES, Settings
from claude_pool_tasks.context import runtime


class _Reads(Mapping[str, str]):
    """An empty environment that remembers every name asked of it."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.names.add(name)
        raise KeyError(name)

    def get(self, name: str, default: object = None) -> object:  # type: ignore[override]
        self.names.add(name)
        return default

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def test_the_listed_variables_are_the_ones_settings_read() -> None:
    reads = _Reads()
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
