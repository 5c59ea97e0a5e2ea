"""Factory fixtures that close what they started.

@pytest.fixture
def proxy_factory() -> Iterator[Callable[[str, int], TcpProxy]]:
    yield from closed_after(lambda host, port: TcpProxy(host, port).start())
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

__all__ = ["closed_after"]


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


def closed_after(start: Callable[..., C]) -> Iterator[Callable[..., C]]:
    """For a fixture to ``yield from``: the test gets ``start``, and once it is done everything
    ``start`` returned is closed, in the order it was started (a test's servers end with it)."""
    started: list[C] = []

    def tracked(*args: object, **kwargs: object) -> C:
        thing = start(*args, **kwargs)
        started.append(thing)
        return thing

    yield tracked
    for thing in started:
        thing.close()
