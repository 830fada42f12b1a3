"""Is the database there, and at which alembic revision (the engine's /readyz)."""
from __future__ import annotations

from functools import lru_cache

from sqlalchemy import inspect, text
from sqlalchemy.orm import Session

VERSION_TABLE = "alembic_version"


def current(s: Session) -> frozenset[str] | None:
    """The revisions the database is at; None when it has no alembic version table (never upgraded,
    or made by create_all). Raises the driver's error when the database cannot be reached."""
    s.execute(text("SELECT 1"))
    if not inspect(s.connection()).has_table(VERSION_TABLE):
        return None
    return frozenset(s.scalars(text(f"SELECT version_num FROM {VERSION_TABLE}")))


@lru_cache(maxsize=1)
def heads() -> frozenset[str]:
    """The newest revisions of db/migrations (read once: the files do not change under a running engine)."""
    from alembic.script import ScriptDirectory

    from engine.dao import db

    return frozenset(ScriptDirectory.from_config(db.alembic_config()).get_heads())
