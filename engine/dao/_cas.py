"""Helpers shared by the compare-and-set queries."""
from __future__ import annotations

from typing import Any, Final, cast

from sqlalchemy.engine import CursorResult, Result
from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key


class _Keep:
    """Sentinel: leave this column as it is."""

    _instance: "_Keep | None" = None

    def __new__(cls) -> "_Keep":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "KEEP"

    def __bool__(self) -> bool:
        return False


KEEP: Final = _Keep()


def update_one(s: Session, model: Any, pk: Any, values: dict[str, Any], *where: Any) -> bool:
    """One row's UPDATE (a compare-and-set when `where` is given): True when the row matched.

    A bulk UPDATE bypasses the identity map, so a copy of the row the session already holds takes
    the values the database wrote, read back by RETURNING in the same statement rather than by a
    second SELECT (values may be SQL expressions, such as a column copied from another). A copy whose
    UPDATE did not match is expired: it is read again, as the row now is, when next used."""
    columns = [getattr(model, name) for name in values]
    stmt = (update(model).where(model.id == pk, *where).values(**values).returning(*columns)
            .execution_options(synchronize_session=False))
    row = s.execute(stmt).first()
    obj = s.identity_map.get(identity_key(model, pk))
    if obj is not None:
        if row is None:
            s.expire(obj)
        else:
            for name, value in zip(values, row):
                set_committed_value(obj, name, value)
    return row is not None


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched. Session.execute answers those with a CursorResult but is
    typed as returning the Result base class, which has no rowcount."""
    return cast(CursorResult[Any], result).rowcount
