"""db.read_sessions: transactions that only read. On SQLite they begin DEFERRED, so a reader neither
takes nor waits for the write lock; a write in one is refused."""
from __future__ import annotations

import pytest
from sqlalchemy import select, update

from engine.dao import db
from engine.dao.models import Cluster


def test_a_reader_does_not_wait_for_a_writer_on_sqlite(tmp_path):
    """A writer holds the write lock (BEGIN IMMEDIATE, its change not committed); a reader reads the
    last committed state at once, where another IMMEDIATE transaction would wait for the lock (and,
    the writer being this very thread, fail with "database is locked" after the busy timeout)."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'e.db'}", sqlite_begin="immediate")
    try:
        db.create_all(engine)
        sessions = db.make_sessions(engine)
        with sessions.begin() as s:
            s.add(Cluster(name="before"))
        readers = db.read_sessions(sessions)
        with sessions.begin() as writer:
            writer.execute(update(Cluster).values(name="during"))
            with readers() as reader:
                assert reader.scalars(select(Cluster.name)).all() == ["before"]
    finally:
        engine.dispose()


def test_a_write_in_a_read_session_is_refused(sessions):
    readers = db.read_sessions(sessions)
    with readers() as s:
        s.add(Cluster(name="nope"))
        with pytest.raises(db.ReadOnlyTransaction):
            s.flush()
    with readers() as s:
        with pytest.raises(db.ReadOnlyTransaction):
            s.execute(update(Cluster).values(name="nope"))
    with sessions() as s:
        assert s.scalars(select(Cluster)).all() == []
