"""Small pieces of query building that several tables share."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlmodel.sql.expression import SelectOfScalar

__all__ = ["where_given"]

T = TypeVar("T")


def where_given(query: SelectOfScalar[T], *conditions: tuple[Any, object | None]) -> SelectOfScalar[T]:
    """``query`` narrowed by each ``(column, value)`` whose value was given (``None``: no filter),
    as list views filter by organization, status and the like."""
    for column, value in conditions:
        if value is not None:
            query = query.where(column == value)
    return query
