from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import bindparam, select, text

from engine.dao import db, pg_cursor
from engine.dao.models import Vm
from tests import testdb

pytestmark = pytest.mark.skipif(not testdb.url(), reason="PostgreSQL's driver")


@pytest.fixture()
def raw(engine_):
    with engine_.connect() as conn:
        yield conn.connection.dbapi_connection


def test_the_engines_connections_use_it(raw):
    assert isinstance(raw.cursor(), pg_cursor.Cursor)


def test_it_describes_as_psycopg_does(raw):
    query = "SELECT 1 AS one, 'x'::text AS two, now() AS three"
    with raw.cursor() as ours, psycopg.Cursor(raw) as theirs:
        ours.execute(query)
        theirs.execute(query)
        described, expected = ours.description, theirs.description
        assert len(described) == 3
        assert [tuple(c) for c in described] == [tuple(c) for c in expected]
        assert [c.name for c in described] == ["one", "two", "three"]
        assert [tuple(c) for c in described[1:]] == [tuple(c) for c in expected[1:]]


def test_a_statement_without_columns_is_answered_as_psycopg_answers_it(raw):
    with raw.cursor() as ours, psycopg.Cursor(raw) as theirs:
        for cursor in (ours, theirs):
            cursor.execute("SET application_name = 'described'")
        assert ours.description is None and theirs.description is None
        for cursor in (ours, theirs):
            cursor.execute("SELECT")
        assert list(ours.description) == theirs.description == []


def test_a_description_read_after_the_cursor_moved_on_is_refused(raw):
    with raw.cursor() as cursor:
        cursor.execute("SELECT 1 AS one")
        first = cursor.description
        cursor.execute("SELECT 2 AS two, 3 AS three")
        with pytest.raises(pg_cursor.StaleDescription):
            first[0]
        assert [c.name for c in cursor.description] == ["two", "three"]


def test_a_cached_statement_runs_without_describing_its_columns(sessions, monkeypatch):
    """SQLAlchemy reads every result's description; once it holds a statement's result metadata it
    needs no column of it, and none is described."""
    described = []
    real = psycopg.Cursor.description.fget
    monkeypatch.setattr(psycopg.Cursor, "description",
                        property(lambda cursor: described.append(1) or real(cursor)))
    statement = select(Vm).where(Vm.id == bindparam("vm_id"))
    with db.read_sessions(sessions)() as s:
        for _ in range(3):
            assert s.scalars(statement, {"vm_id": "none"}).all() == []
        s.execute(text("SELECT 1")).all()
    assert len(described) <= 2      # the first run of each statement, before its metadata is cached
