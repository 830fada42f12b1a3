"""The PostgreSQL cursor the engine's connections use: psycopg's own, whose `description` is described
only when read.

psycopg builds `cursor.description` -- a Column object per result column, each looking up its type --
every time it is read, and SQLAlchemy reads it after every statement, even when it already holds the
statement's result metadata (a cached compiled statement) and only needs to know that rows came back.
A plug reads some eighty columns in its four statements; describing them was 6% of its CPU."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

import psycopg
from psycopg import Column


class StaleDescription(RuntimeError):
    """A description read after its cursor moved on to another result."""


class Description(Sequence[Column]):
    """The description of one result of `cursor`: its length at once, its columns when first read
    (while the cursor still holds that result)."""

    __slots__ = ("_cursor", "_result", "_columns")

    def __init__(self, cursor: psycopg.Cursor[Any], result: Any) -> None:
        self._cursor = cursor
        self._result = result
        self._columns: list[Column] | None = None

    def _described(self) -> list[Column]:
        if self._columns is None:
            if self._cursor.pgresult is not self._result:
                raise StaleDescription("the cursor moved on to another result")
            self._columns = psycopg.Cursor.description.__get__(self._cursor) or []
        return self._columns

    def __len__(self) -> int:
        return int(self._result.nfields)

    @overload
    def __getitem__(self, index: int) -> Column: ...

    @overload
    def __getitem__(self, index: slice) -> list[Column]: ...

    def __getitem__(self, index: int | slice) -> Column | list[Column]:
        return self._described()[index]


class Cursor(psycopg.Cursor[Any]):
    """psycopg's cursor with Description for a result that has columns (the same answer otherwise)."""

    @property
    def description(self) -> Description | list[Column] | None:     # type: ignore[override]
        result = self.pgresult
        if result is None or not result.nfields:
            return super().description
        return Description(self, result)
