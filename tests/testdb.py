"""Which PostgreSQL the tests use: PLUGBOARD_TEST_DB_URL, or nothing (SQLite).

Under pytest-xdist every worker gets a database of its own next to the configured one
(plugboard_test_gw0, ...), created on first use, because the fixtures drop and create tables and
two workers sharing one database would wipe each other's rows. The role needs CREATEDB, which
scripts/start-postgres.sh gives it.
"""
from __future__ import annotations

import functools
import os

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ENV = "PLUGBOARD_TEST_DB_URL"


@functools.cache
def url() -> str | None:
    """The PostgreSQL URL this test process should use, or None when the tests run on SQLite."""
    configured = os.environ.get(ENV)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not configured or not worker:
        return configured or None
    base = make_url(configured)
    own = base.set(database=f"{base.database}_{worker}")
    _create_if_missing(base.set(database="postgres"), own.database or "")
    return own.render_as_string(hide_password=False)


def _create_if_missing(admin_url, name: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}) is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
