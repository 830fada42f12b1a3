"""The agent's event journal: what happened on this host (a device removed, a removal that failed, a VM
that stopped, a host device that appeared, vanished or was dropped at start), kept on disk so that
neither the agent's nor the engine's restart loses an event.

The engine reads it with Host.getEvents(after=<last seq it has handled>, timeout=...): a long poll that
answers at once when there are newer events and otherwise waits until one is appended or the timeout
passes. Sequence numbers come from SQLite's AUTOINCREMENT, so they only grow, across restarts and after
old events are pruned. When the engine's `after` is larger than the journal's newest seq the journal was
replaced: the read answers at once (no events, and `last`), so the caller can start over.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable

KINDS = frozenset({"device_removed", "device_removal_failed", "vm_lifecycle",
                   "hostdev_added", "hostdev_removed", "hostdev_dropped"})

DEFAULT_KEEP = 10_000
MAX_LIMIT = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    time   REAL NOT NULL,
    kind   TEXT NOT NULL,
    vm_id  TEXT,
    alias  TEXT,
    data   TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS unplugs_in_flight (
    vm_id  TEXT NOT NULL,
    alias  TEXT NOT NULL,
    PRIMARY KEY (vm_id, alias)
)
"""


class Journal:
    """One SQLite file in WAL mode, one connection shared under a lock; a Condition on that lock wakes
    long-polling readers when an event is appended. Safe to use from any thread."""

    def __init__(self, path: Path | str, keep: int = DEFAULT_KEEP) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep!r}")
        self.path = Path(path)
        self.keep = keep
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._appended = threading.Condition(self._lock)
        self._polls_stopped = False     # stop_polls: the agent is stopping
        # isolation_level=None: autocommit; each write below is its own explicit transaction.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL keeps every committed event across a crash or restart of the process.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    # -- writing ---------------------------------------------------------------------------------------
    def append(self, kind: str, vm_id: str | None = None, alias: str | None = None,
               data: dict[str, Any] | None = None) -> int:
        """Record one event; returns its sequence number and wakes every waiting reader."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}; expected one of {', '.join(sorted(KINDS))}")
        payload = json.dumps(data or {}, sort_keys=True, default=str)
        with self._appended:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute("INSERT INTO events (time, kind, vm_id, alias, data) VALUES (?, ?, ?, ?, ?)",
                                       (time.time(), kind, vm_id, alias, payload))
                assert cur.lastrowid is not None   # set by every INSERT
                seq = int(cur.lastrowid)
                # Retention: a range delete on the primary key, usually of one row or none.
                self._db.execute("DELETE FROM events WHERE seq <= ?", (seq - self.keep,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._appended.notify_all()
            return seq

    # -- unplugs in flight (vdsm_plugin.removals) ---------------------------------------------------------
    # Kept here rather than in a file of their own: a WAL commit costs a few tens of microseconds, while
    # rewriting a file and renaming it over the old one, twice per unplug, cost each unplug 0.5-0.9 ms on
    # ext4.
    def unplugs_in_flight(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(vm_id, alias) for vm_id, alias in
                    self._db.execute("SELECT vm_id, alias FROM unplugs_in_flight ORDER BY vm_id, alias")]

    def set_unplug_in_flight(self, vm_id: str, alias: str, in_flight: bool) -> None:
        sql = ("INSERT OR IGNORE INTO unplugs_in_flight (vm_id, alias) VALUES (?, ?)" if in_flight
               else "DELETE FROM unplugs_in_flight WHERE vm_id = ? AND alias = ?")
        with self._lock:
            self._db.execute(sql, (vm_id, alias))

    def clear_unplugs_in_flight(self, vm_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM unplugs_in_flight WHERE vm_id = ?", (vm_id,))

    # -- reading ---------------------------------------------------------------------------------------
    def read(self, after: int = 0, timeout: float = 0, limit: int = 100, *,
             poll: bool = False) -> tuple[list[dict[str, Any]], int]:
        """Events with seq > `after`, oldest first, at most `limit` of them, and the newest seq in the
        journal. When there is none, waits up to `timeout` seconds for one to be appended. `poll`: a
        client's long poll (Host.getEvents), which stop_polls answers at once."""
        limit = max(1, min(int(limit), MAX_LIMIT))
        deadline = time.monotonic() + max(0.0, float(timeout))
        with self._appended:
            while True:
                events = self._select(after, limit)
                last = self._read_last()
                remaining = deadline - time.monotonic()
                if events or remaining <= 0 or after > last or (poll and self._polls_stopped):
                    return events, last
                self._appended.wait(remaining)

    def stop_polls(self) -> None:
        """The agent is stopping: the long polls waiting now, and any after, answer at once with what
        there is (nothing, usually; the client polls again, from where it was). A poll has nothing to
        finish, so the shutdown need not wait up to its timeout for it. The agent's own waits (an
        unplug waiting for its device's removal) go on: their requests finish."""
        with self._appended:
            self._polls_stopped = True
            self._appended.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float,
                 after: int = 0) -> dict[str, Any] | None:
        """The first event with seq > `after` for which `predicate` is true, waiting up to `timeout`
        seconds for it to be appended; None when the time runs out."""
        deadline = time.monotonic() + max(0.0, float(timeout))
        while True:
            events, _ = self.read(after=after, timeout=max(0.0, deadline - time.monotonic()), limit=MAX_LIMIT)
            for event in events:
                if predicate(event):
                    return event
            if not events:  # the time ran out (or `after` lies beyond the journal)
                return None
            after = events[-1]["seq"]

    @property
    def last(self) -> int:
        with self._lock:
            return self._read_last()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals (called with the lock held) -----------------------------------------------------------
    def _select(self, after: int, limit: int) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT seq, time, kind, vm_id, alias, data FROM events WHERE seq > ? "
                                "ORDER BY seq LIMIT ?", (int(after), limit)).fetchall()
        return [{"seq": seq, "time": t, "kind": kind, "vmId": vm_id, "alias": alias, "data": json.loads(data)}
                for seq, t, kind, vm_id, alias, data in rows]

    def _read_last(self) -> int:
        # sqlite_sequence remembers the largest seq ever given, even once those rows are pruned.
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return int(row[0]) if row else 0
