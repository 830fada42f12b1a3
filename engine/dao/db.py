"""Engines, session factories and schema management for the engine's database.

SQLite (development, tests) and PostgreSQL through psycopg 3 (production) are supported. The schema is
owned by the alembic revisions in ``db/migrations``; :func:`create_all` is a shortcut for tests.
"""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import psycopg
from sqlalchemy import Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from engine.dao import pg_cursor
from engine.dao.models import Base

#: The alembic environment (env.py, versions/), found relative to this file so any cwd works.
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "db" / "migrations"

SQLITE_BUSY_TIMEOUT_MS = 5000
#: WAL mode with synchronous=NORMAL (what SQLite recommends for WAL): a commit appends to the WAL
#: without an fsync, the WAL is synced at checkpoints. A crash of the engine loses no committed
#: transaction; a power loss or OS crash may lose the last ones, never the database's consistency (and
#: the monitor reconciles devices with the hosts). FULL costs an fsync at every commit, two per request.
SQLITE_SYNCHRONOUS = "NORMAL"

SqliteBegin = Literal["deferred", "immediate"]


def normalize_url(url: str) -> str:
    """Accept the usual spellings of a PostgreSQL URL and route them to the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def is_sqlite(url_or_engine: str | Engine) -> bool:
    if isinstance(url_or_engine, Engine):
        return url_or_engine.dialect.name == "sqlite"
    return make_url(normalize_url(url_or_engine)).get_backend_name() == "sqlite"


def make_engine(url: str, *, echo: bool = False, sqlite_begin: SqliteBegin = "deferred",
                sqlite_foreign_keys: bool = True, connections: int | None = None, **kwargs: Any) -> Engine:
    """Create the engine for `url`.

    SQLite connections get WAL journaling with ``synchronous=NORMAL`` (see SQLITE_SYNCHRONOUS),
    ``foreign_keys=ON`` (so ON DELETE CASCADE works) and a busy timeout of 5 s, set on every new DBAPI
    connection. The driver's own implicit BEGIN is replaced by an explicit one emitted by SQLAlchemy,
    so that savepoints work and so that ``sqlite_begin="immediate"`` can take the write lock at the
    start of every transaction. With the default ("deferred"), a transaction that reads and then writes
    may fail with "database is locked" when another writer committed in between; a compare-and-set
    issued as the first statement of a transaction waits for the lock instead. PostgreSQL URLs
    (``postgresql+psycopg://...``) get a ping at checkout after PING_AFTER_IDLE_S of idleness.
    `connections`: how many connections the pool keeps (SQLAlchemy's pool_size), e.g. one per request
    thread, as a live command holds its connection through its host call (one_connection).
    """
    url = normalize_url(url)
    if connections is not None and make_url(url).database not in (None, "", ":memory:"):
        kwargs.setdefault("pool_size", connections)
    if is_sqlite(url):
        if sqlite_begin not in ("deferred", "immediate"):
            raise ValueError(f"sqlite_begin must be 'deferred' or 'immediate', not {sqlite_begin!r}")
        engine = create_engine(url, echo=echo, **kwargs)
        _configure_sqlite(engine, begin=sqlite_begin, foreign_keys=sqlite_foreign_keys)
        return engine
    engine = create_engine(url, echo=echo, **kwargs)
    _describe_on_demand(engine)
    _ensure_transactional(engine)
    _readers_in_autocommit(engine)
    if not kwargs.get("pool_pre_ping"):
        _ping_after_idle(engine)
    return engine


def _describe_on_demand(engine: Engine) -> None:
    """Cursors of pg_cursor.Cursor on every new connection."""

    @event.listens_for(engine, "connect")
    def _cursor(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.cursor_factory = pg_cursor.Cursor


#: A pooled PostgreSQL connection is pinged at checkout only when it has been idle this long; one used
#: a moment ago is trusted, as HikariCP trusts a connection used in its last 500 ms. A request costs
#: two checkouts (authentication, then the command); pinging both cost two round trips per request.
PING_AFTER_IDLE_S = 0.5


def _ping_after_idle(engine: Engine) -> None:
    """Pre-ping, only after idleness: a connection that fails its ping is replaced before use
    (SQLAlchemy's pool retries a checkout refused with DisconnectionError). A server restart inside
    the window fails the one statement that finds it, and SQLAlchemy then renews the whole pool."""

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_conn: Any, record: Any) -> None:
        record.info.pop(_IDLE_SINCE, None)

    @event.listens_for(engine, "checkin")
    def _idle(_dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as e:
            raise DisconnectionError(f"pooled connection failed its ping: {e}") from e


_IDLE_SINCE = "plugboard_idle_since"


def _configure_sqlite(engine: Engine, *, begin: SqliteBegin, foreign_keys: bool) -> None:
    memory = engine.url.database in (None, "", ":memory:")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (see "begin" below) instead of the sqlite3 module.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
            cur.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cur.close()

    statement = "BEGIN IMMEDIATE" if begin == "immediate" else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A reader's transaction (read_sessions) never takes the write lock: in WAL mode it reads its
        # snapshot while a writer works, instead of queueing behind it.
        sql = "BEGIN" if conn.get_execution_options().get(READ_ONLY) else statement
        # Sent on the driver's connection: through exec_driver_sql (a cursor, its events and result)
        # it cost 0.03-0.05 ms more per transaction. Its errors ("database is locked" after the busy
        # timeout) are wrapped as SQLAlchemy's own, as exec_driver_sql did.
        try:
            conn.connection.driver_connection.execute(sql)
        except sqlite3.Error as e:
            raise DBAPIError.instance(sql, (), e, sqlite3.Error) from e


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    """The session factory every caller uses: ``with sessions.begin() as s: ...``. Objects stay
    readable after commit (expire_on_commit=False) so that commands can return what they wrote."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def one_connection(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose transactions all run on one connection, checked out (and, on PostgreSQL,
    pinged) once: a command that commits before a host call and again after it. The connection sits
    idle, outside any transaction, during the call."""
    with sessions.kw["bind"].connect() as conn, sessions(bind=conn) as s:
        yield s


@contextmanager
def one_statement(s: Session) -> Iterator[Session]:
    """Begin a transaction of `s` that runs exactly one statement (a compare-and-set that carries its
    audit event and other writes: dao._cas.OneRowUpdate). On PostgreSQL it runs in autocommit: one
    statement is atomic by itself, and BEGIN and COMMIT would be two more round trips."""
    if s.get_bind().dialect.name != "postgresql":
        with s.begin():
            yield s
        return
    with autocommit(s):
        yield s


@contextmanager
def autocommit(s: Session) -> Iterator[Session]:
    """PostgreSQL: statements of `s` that each commit by themselves, with no BEGIN or COMMIT -- reads
    of the last committed state, each its own snapshot, and compare-and-sets atomic on their own. A
    session bound to one connection (one_connection) gets a transactional connection back for its
    next transaction."""
    if s.get_bind().dialect.name != "postgresql":
        raise ValueError("autocommit is PostgreSQL's")
    with s.begin():
        conn = s.connection()
        _driver_autocommit(conn.connection.dbapi_connection)
        try:
            yield s
        finally:
            if not conn.invalidated:    # one SQLAlchemy invalidated (a lost server) is never lent again
                _transactional(conn.connection.dbapi_connection, conn.connection)


# Autocommit is psycopg's own switch, turned on the driver's connection for a block: SQLAlchemy's
# isolation level AUTOCOMMIT sets and resets its connection characteristics around each use (four
# driver calls and their bookkeeping, about 0.02 ms of CPU per block here). SQLAlchemy's BEGIN is
# implicit (the driver's) and its COMMIT or ROLLBACK of a connection outside a transaction sends
# nothing, so it works on as before. The pool never lends a connection in autocommit
# (_ensure_transactional, at every checkin).

def _driver_autocommit(dbapi_conn: Any) -> None:
    dbapi_conn.autocommit = True


def _transactional(dbapi_conn: Any, record: Any) -> None:
    """Autocommit off again. A transaction left open by a BEGIN sent in autocommit is rolled back
    first; a connection where either fails (broken) is invalidated, so the pool never lends it."""
    if dbapi_conn is None or dbapi_conn.closed or not dbapi_conn.autocommit:
        return
    try:
        if dbapi_conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            dbapi_conn.rollback()
        dbapi_conn.autocommit = False
    except psycopg.Error:
        record.invalidate()


def _ensure_transactional(engine: Engine) -> None:
    event.listen(engine, "checkin", _transactional)


def _readers_in_autocommit(engine: Engine) -> None:
    """A reader's connection (READ_ONLY: read_sessions, and Core connections of their bind) turns
    autocommit on as its transaction begins, before its first statement: no BEGIN, no ROLLBACK."""

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            _driver_autocommit(conn.connection.dbapi_connection)


#: The execution option that marks a reader's connection (read_sessions).
READ_ONLY = "plugboard_read_only"


class ReadOnlyTransaction(RuntimeError):
    """A write was attempted in a session of read_sessions."""


def read_sessions(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """A session factory on the same database for transactions that only read (authentication, the
    answer's read after a command). On SQLite they begin DEFERRED whatever the engine's sqlite_begin,
    so a reader neither takes nor waits for the write lock (WAL: it reads the last committed state).
    On PostgreSQL they run in autocommit, as do Core connections of their bind (the monitor's read of
    a host before each poll): under READ COMMITTED every statement of a transaction reads its own
    snapshot anyway, so a reader's BEGIN and ROLLBACK bought nothing but two round trips. A
    write in one raises ReadOnlyTransaction: a deferred transaction that tries to write could fail with
    "database is locked" instead of waiting, and an autocommitted one could not be rolled back."""
    bind = sessions.kw["bind"]
    readers = sessionmaker(bind=bind.execution_options(**{READ_ONLY: True}), expire_on_commit=False)

    def refuse(*_args: Any) -> None:
        raise ReadOnlyTransaction("a read-only session cannot write")

    def refuse_dml(state: Any) -> None:
        if state.is_insert or state.is_update or state.is_delete:
            refuse()

    event.listen(readers, "before_flush", refuse)
    event.listen(readers, "do_orm_execute", refuse_dml)
    return readers


def alembic_config(url: str | None = None) -> Any:
    """An alembic Config pointing at db/migrations, usable from any working directory."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a literal % in a password must be doubled.
        cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (default: the newest) with the alembic revisions.

    On SQLite, foreign keys are off while migrating: batch operations rebuild tables, which would
    otherwise cascade or fail on referencing rows. On PostgreSQL the migration holds an advisory lock,
    so that replicas started together migrate one after the other (the later ones find it done)."""
    from alembic import command

    engine = make_engine(url, sqlite_foreign_keys=False)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCKS["migrations"]})
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def create_all(engine: Engine) -> None:
    """Create every table of the models directly (tests, throw-away databases)."""
    Base.metadata.create_all(engine)


def drop_all(engine: Engine) -> None:
    """Drop every table in the database, including ones the models do not know (alembic_version,
    leftovers of other revisions)."""
    reflected = MetaData()
    reflected.reflect(bind=engine)
    reflected.drop_all(engine)


#: PostgreSQL advisory lock ids: the transaction-scoped locks `serialize` and `upgrade` take, and the
#: session lock the monitor's leader holds (engine.dao.leases).
LOCKS = {"mac_pool": 0x504C_4D41, "monitor": 0x504C_4D4F, "migrations": 0x504C_4D44}


def serialize(s: Session, name: str) -> None:
    """Hold lock `name` until the session's transaction ends, so that a read-then-write (the MAC
    pool's "first free address") is not interleaved with another transaction's. On PostgreSQL an
    advisory transaction lock; SQLite has a single writer (IMMEDIATE transactions take it at BEGIN)."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCKS[name]})
