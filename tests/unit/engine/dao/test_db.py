from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.pool import NullPool

from engine.dao import db
from tests import testdb

MIGRATIONS = Path(__file__).resolve().parents[4] / "db" / "migrations" / "versions"


def test_sqlite_connections_get_wal_foreign_keys_and_busy_timeout(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'e.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    finally:
        engine.dispose()


def test_sqlite_begin_takes_the_write_lock_and_a_reader_does_not(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'e.db'}", sqlite_begin="immediate")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x)")
        with engine.begin() as writer:
            assert writer.connection.driver_connection.in_transaction
            with engine.execution_options(**{db.READ_ONLY: True}).begin() as reader:  # does not wait
                assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
    finally:
        engine.dispose()


def test_sqlite_begin_failure_is_a_sqlalchemy_error(tmp_path):
    """A BEGIN IMMEDIATE that cannot get the write lock within the busy timeout fails as
    sqlalchemy.exc.OperationalError (a DBAPIError), as every other statement's error does."""
    from sqlalchemy.exc import OperationalError

    path = tmp_path / "e.db"
    engine = db.make_engine(f"sqlite:///{path}", sqlite_begin="immediate")
    other = db.make_engine(f"sqlite:///{path}", sqlite_begin="immediate")
    try:
        @event.listens_for(other, "connect")
        def _no_wait(dbapi_conn, _record):
            dbapi_conn.execute("PRAGMA busy_timeout=0")
        with engine.begin():
            with pytest.raises(OperationalError, match="locked"):
                with other.begin():
                    pass
    finally:
        engine.dispose()
        other.dispose()


def test_sqlite_savepoints_work(tmp_path, sessions, make_cluster):
    from engine.dao.models import Cluster

    with sessions.begin() as s:
        s.add(Cluster(name="kept"))
        try:
            with s.begin_nested():
                s.add(Cluster(name="rolled-back"))
                s.flush()
                raise RuntimeError
        except RuntimeError:
            pass
    with sessions() as s:
        from engine.dao import clusters
        assert [c.name for c in clusters.list(s)] == ["kept"]


@pytest.mark.parametrize("url,expected", [
    ("postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
    ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
    ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
])
def test_normalize_url(url, expected):
    assert db.normalize_url(url) == expected


def test_postgresql_url_uses_psycopg_without_connecting():
    engine = db.make_engine("postgresql://nobody@127.0.0.1:1/none")
    assert engine.dialect.driver == "psycopg"
    engine.dispose()


def test_bad_sqlite_begin_mode_is_refused(tmp_path):
    with pytest.raises(ValueError):
        db.make_engine(f"sqlite:///{tmp_path / 'e.db'}", sqlite_begin="exclusive")  # type: ignore[arg-type]


def test_upgrade_works_from_any_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'm.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    try:
        assert "vm_nics" in inspect(engine).get_table_names()
        with engine.connect() as conn:
            newest = max(p.name[:4] for p in MIGRATIONS.glob("0*.py"))
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == newest
    finally:
        engine.dispose()


def test_fixture_database_is_empty_and_complete(engine_):
    names = set(inspect(engine_).get_table_names())
    assert {"clusters", "hosts", "vms", "vm_devices", "vm_nics", "host_devices", "audit_events"} <= names


def test_unreachable_configured_database_fails_not_skips():
    """The conftest helper fails the test when PLUGBOARD_TEST_DB_URL points nowhere."""
    from tests.unit.engine.conftest import connect_or_fail

    engine = db.make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2})
    try:
        with pytest.raises(pytest.fail.Exception, match="unreachable"):
            connect_or_fail(engine)
    finally:
        engine.dispose()


PG_ONLY = pytest.mark.skipif(not testdb.url(), reason="PostgreSQL behaviour")


@PG_ONLY
def test_postgresql_readers_run_without_a_transaction(sessions):
    """Each statement of a reader is its own transaction: no BEGIN and ROLLBACK round trips around it
    (READ COMMITTED gave every statement its own snapshot anyway), in a session or on a Core
    connection of the readers' bind. A writer's statements share one."""
    in_own_transaction = text("SELECT now() = statement_timestamp()")
    with db.read_sessions(sessions)() as s:
        s.execute(text("SELECT pg_sleep(0.01)"))
        assert s.scalar(in_own_transaction) is True
        reader = s.scalar(text("SELECT pg_backend_pid()"))
    with db.read_sessions(sessions).kw["bind"].connect() as conn:     # Core, on the readers' bind
        conn.execute(text("SELECT pg_sleep(0.01)"))
        assert conn.scalar(in_own_transaction) is True
    with sessions.begin() as s:
        assert s.scalar(text("SELECT pg_backend_pid()")) == reader     # the pool lends it back transactional
        s.execute(text("SELECT pg_sleep(0.01)"))
        assert s.scalar(in_own_transaction) is False


@PG_ONLY
def test_a_one_statement_transaction_runs_in_autocommit_and_leaves_the_connection_as_it_was(sessions):
    """db.one_statement: no BEGIN and COMMIT on PostgreSQL; the next transaction of a session bound to
    one connection (a command's) is a transaction again, as is the pool's next of that connection."""
    in_own_transaction = text("SELECT now() = statement_timestamp()")
    with db.one_connection(sessions) as s:
        for _ in range(2):
            with db.one_statement(s):
                s.execute(text("SELECT pg_sleep(0.01)"))
                assert s.scalar(in_own_transaction) is True
            with s.begin():
                s.execute(text("SELECT pg_sleep(0.01)"))
                assert s.scalar(in_own_transaction) is False
    with sessions() as s, db.one_statement(s):
        s.execute(text("SELECT pg_sleep(0.01)"))
        assert s.scalar(in_own_transaction) is True
    with sessions.begin() as s:
        s.execute(text("SELECT pg_sleep(0.01)"))
        assert s.scalar(in_own_transaction) is False


@PG_ONLY
def test_autocommit_sends_no_isolation_change_and_rolls_back_a_transaction_left_open(sessions):
    """Autocommit is the driver's switch, turned for the block only (no SET of the isolation level,
    no change of SQLAlchemy's connection characteristics). A BEGIN sent inside the block leaves a
    transaction open; it is rolled back when the block ends, and the connection goes on as a
    transactional one."""
    sent: list[str] = []
    engine = sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
    event.listen(engine, "set_connection_execution_options", lambda *a: sent.append("options"))
    with db.one_connection(sessions) as s:
        with db.autocommit(s):
            s.connection().exec_driver_sql("BEGIN")
            s.execute(text("CREATE TABLE left_open (x int)"))
        with s.begin():
            assert s.connection().connection.dbapi_connection.autocommit is False
            assert s.scalar(text("SELECT to_regclass('left_open') IS NULL")) is True
            assert s.scalar(text("SELECT now() = statement_timestamp()")) is False
    assert "options" not in sent and not any("isolation" in statement.lower() for statement in sent)


@PG_ONLY
def test_a_connection_lost_inside_autocommit_fails_with_its_own_error_and_is_not_lent_again(sessions):
    from sqlalchemy.exc import OperationalError

    other = create_engine(sessions.kw["bind"].url, poolclass=NullPool)
    with pytest.raises(OperationalError), db.one_connection(sessions) as s, db.autocommit(s):
        pid = s.scalar(text("SELECT pg_backend_pid()"))
        with other.connect() as killer:
            killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            killer.commit()
        s.execute(text("SELECT 1"))
    other.dispose()
    with sessions.begin() as s:
        assert s.scalar(text("SELECT pg_backend_pid()")) != pid
        assert s.scalar(text("SELECT now() = statement_timestamp()")) is False


@PG_ONLY
def test_postgresql_connections_are_pinged_only_after_idleness(engine_, monkeypatch):
    """A connection used a moment ago is trusted; one idle longer than PING_AFTER_IDLE_S is pinged,
    and replaced when its server side is gone, so the statement that follows still works."""
    pings = []
    real_ping = engine_.dialect.do_ping
    monkeypatch.setattr(engine_.dialect, "do_ping", lambda conn: pings.append(conn) or real_ping(conn))
    with engine_.connect() as conn:
        pid = conn.scalar(text("SELECT pg_backend_pid()"))
    with engine_.connect() as conn:
        assert conn.scalar(text("SELECT pg_backend_pid()")) == pid
    assert pings == []
    other = create_engine(engine_.url, poolclass=NullPool)
    with other.connect() as killer:
        killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        killer.commit()
    other.dispose()
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)
    with engine_.connect() as conn:
        assert conn.scalar(text("SELECT pg_backend_pid()")) not in (pid, None)
    assert len(pings) >= 1


def test_connections_sizes_the_pool_where_there_is_one(tmp_path):
    """The app's engine keeps a connection per request thread (a live plug holds one through its host
    call); an in-memory SQLite database has a single connection and no pool size to set."""
    assert db.make_engine(f"sqlite:///{tmp_path}/e.db", connections=12).pool.size() == 12
    assert db.make_engine("postgresql+psycopg://u@localhost/x", connections=12).pool.size() == 12
    db.make_engine("sqlite://", connections=12).dispose()
