"""Which execution the delegation running now belongs to, so that its events can name it.

The pool tells its listeners about a request, never about the execution row a front end made for
it. A front end that records the delegation runs it inside :func:`execution_scope`, and the
publisher reads the id back with :func:`current_execution_id`. A context variable rather than a
field of the request: the pool's models stay free of recording concerns, and each asyncio task
has its own copy (taken when the task is created), so concurrent delegations never see each
other's id; the listeners run in the delegating task itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["current_execution_id", "execution_scope"]

_execution_id: ContextVar[str | None] = ContextVar("claude_pool_execution_id", default=None)


@contextmanager
def execution_scope(execution_id: str | None) -> Iterator[None]:
    """Within the block (and in the tasks created inside it), events name ``execution_id``."""
    token = _execution_id.set(execution_id)
    try:
        yield
    finally:
        _execution_id.reset(token)


def current_execution_id() -> str | None:
    """The id of the execution being delegated in this context; ``None`` outside any scope (a
    library call that records nothing)."""
    return _execution_id.get()
