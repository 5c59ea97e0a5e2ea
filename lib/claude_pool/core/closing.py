"""One way to be used as ``async with``: what a class closes is its ``aclose``, nothing else."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

__all__ = ["AsyncClosing"]


class AsyncClosing(ABC):
    """``async with`` gives the object itself and calls :meth:`aclose` on the way out."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release what the object holds; closing twice is fine."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
