"""An environment that remembers what the code asked of it: which variables a piece of code reads."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

__all__ = ["RecordingEnvironment"]


class RecordingEnvironment(Mapping[str, str]):
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
