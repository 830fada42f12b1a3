"""The monitor's lease: the one process of a deployment that watches the hosts holds it.

PostgreSQL: a session-level advisory lock taken on a connection of its own. It is held as long as that
connection lives, so a process that dies, even by kill -9, loses it as soon as the server sees the socket
close, and a standby process (another worker, another replica) takes it. The connection is named after
the holder (`application_name`), so `pg_stat_activity` shows who leads.

SQLite: an exclusive flock on a file next to the database; the kernel releases it when the process exits.
SQLite has one writer anyway, so an SQLite deployment is one engine process (`plugboard engine serve`
refuses more than one worker on it).
"""
from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from engine.dao.db import LOCKS, is_sqlite

__all__ = ["Lease", "PgLease", "FileLease", "LocalLease", "monitor_lease", "holder_name"]


class Lease(Protocol):
    def acquire(self) -> bool:
        """Take the lease if it is free; never waits. True when this process holds it."""

    def held(self) -> bool:
        """Whether this process still holds it (the database connection still answers)."""

    def release(self) -> None:
        """Give it up (idempotent)."""


def holder_name() -> str:
    """Who holds the lease, as operators see it: host and process id."""
    return f"plugboard-monitor {socket.gethostname()}:{os.getpid()}"


class PgLease:
    """pg_try_advisory_lock on a connection kept open while the lease is held."""

    def __init__(self, engine: Engine, key: int = LOCKS["monitor"]) -> None:
        self._engine = engine
        self._key = key
        self._conn: Connection | None = None

    def acquire(self) -> bool:
        if self._conn is not None and self.held():
            return True
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            conn.execute(text("SELECT set_config('application_name', :name, false)"), {"name": holder_name()})
            won = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}).scalar())
        except BaseException:
            conn.invalidate()
            conn.close()
            raise
        if not won:
            conn.close()
            return False
        self._conn = conn
        return True

    def held(self) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1"))
            return True
        except DBAPIError:
            self._drop(invalidate=True)
            return False

    def release(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
        except DBAPIError:
            self._drop(invalidate=True)
            return
        self._drop(invalidate=False)

    def _drop(self, *, invalidate: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        # A connection that went back to the pool still holding the lock would lead for nobody.
        if invalidate:
            conn.invalidate()
        conn.close()

    def __repr__(self) -> str:
        return f"PostgreSQL advisory lock {self._key:#x}"


class FileLease:
    """An exclusive, non-blocking flock on `path` (the file is created, and holds the holder's name)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, (holder_name() + "\n").encode())
        self._fd = fd
        return True

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)    # closing the descriptor drops the flock

    def __repr__(self) -> str:
        return f"lock file {self.path}"


class LocalLease:
    """An in-memory database belongs to one process: the lease is always this process's."""

    def __init__(self) -> None:
        self._held = False

    def acquire(self) -> bool:
        self._held = True
        return True

    def held(self) -> bool:
        return self._held

    def release(self) -> None:
        self._held = False

    def __repr__(self) -> str:
        return "in-memory database"


def monitor_lease(engine: Engine) -> Lease:
    """The monitor's lease for the database `engine` points at."""
    if not is_sqlite(engine):
        return PgLease(engine)
    database = engine.url.database
    if not database or database == ":memory:":
        return LocalLease()
    return FileLease(Path(database).with_name(Path(database).name + ".monitor.lock"))
