"""Helpers shared by the compare-and-set queries."""
from __future__ import annotations

from typing import Any, Final, cast

from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session
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


def reload_if_loaded(s: Session, model: type, pk: Any) -> None:
    """A compare-and-set is a bulk UPDATE that bypasses the identity map: when the session holds the
    object, reload it so that it shows the row as it now is (and stays readable after commit, as
    sessions do not expire on commit)."""
    obj = s.identity_map.get(identity_key(model, pk))
    if obj is None:
        return
    try:
        s.refresh(obj)
    except InvalidRequestError:     # the row is gone (deleted by another transaction)
        s.expire(obj)


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched. Session.execute answers those with a CursorResult but is
    typed as returning the Result base class, which has no rowcount."""
    return cast(CursorResult[Any], result).rowcount
