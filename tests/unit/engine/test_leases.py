"""The monitor's lease (engine.dao.leases) and the standby that runs a monitor only while it holds it
(engine.monitor.runner.Standby)."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from engine.dao import db, leases
from tests import testdb
from engine.monitor.runner import Standby

PG = bool(testdb.url())


class RecordingMonitor:
    """What Standby needs of a Monitor, recording what it was told."""

    def __init__(self) -> None:
        self.reconciled: list[bool] = []
        self._running = threading.Event()

    def reconcile_all(self, *, startup: bool) -> int:
        self.reconciled.append(startup)
        return 0

    def start(self) -> None:
        self._running.set()

    def stop(self, timeout: float | None = None) -> None:
        self._running.clear()

    @property
    def running(self) -> bool:
        return self._running.is_set()


def wait_until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def two_leases(engine_, tmp_path):
    if PG:
        return leases.PgLease(engine_), leases.PgLease(engine_)
    path = tmp_path / "engine.db.monitor.lock"
    return leases.FileLease(path), leases.FileLease(path)


def test_the_lease_is_held_by_one_until_released(engine_, tmp_path):
    first, second = two_leases(engine_, tmp_path)
    assert first.acquire()
    assert first.acquire()          # taking it again keeps it
    assert not second.acquire()
    assert first.held() and not second.held()
    first.release()
    first.release()                 # idempotent
    assert not first.held()
    assert second.acquire()
    assert not first.acquire()
    second.release()


def test_the_lease_names_its_holder(engine_, tmp_path):
    lease, _ = two_leases(engine_, tmp_path)
    assert lease.acquire()
    try:
        if PG:
            with engine_.connect() as conn:
                names = conn.execute(text(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.objid = :key"),
                    {"key": db.LOCKS["monitor"]}).scalars().all()
            assert names == [leases.holder_name()]
        else:
            assert (tmp_path / "engine.db.monitor.lock").read_text().strip() == leases.holder_name()
    finally:
        lease.release()


@pytest.mark.skipif(not PG, reason="a PostgreSQL connection that the server closes")
def test_a_lost_connection_loses_the_lease_and_frees_it(engine_, tmp_path):
    first, second = two_leases(engine_, tmp_path)
    assert first.acquire()
    with engine_.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :n "
                          "AND pid <> pg_backend_pid()"), {"n": leases.holder_name()})
        conn.commit()
    assert not first.held()
    assert second.acquire()
    second.release()


def test_the_lease_of_a_database_url(tmp_path):
    assert isinstance(leases.monitor_lease(db.make_engine(f"sqlite:///{tmp_path}/e.db")), leases.FileLease)
    assert isinstance(leases.monitor_lease(db.make_engine("sqlite://")), leases.LocalLease)
    assert isinstance(leases.monitor_lease(db.make_engine("postgresql+psycopg://u@localhost/x")), leases.PgLease)


def test_one_standby_runs_its_monitor_and_the_other_takes_over_when_it_stops(engine_, tmp_path):
    lease_a, lease_b = two_leases(engine_, tmp_path)
    a, b = RecordingMonitor(), RecordingMonitor()
    first = Standby(a, lease_a, startup=True, retry=0.05)
    second = Standby(b, lease_b, startup=True, retry=0.05)
    first.start()
    assert a.running and a.reconciled == [True]     # taken at start: reconciled before serving
    second.start()
    try:
        time.sleep(0.2)
        assert not b.running and b.reconciled == []
        first.stop()
        assert not a.running
        assert wait_until(lambda: b.running)
        # it serves meanwhile (a graceful restart's new worker): its own commands may be in flight
        assert b.reconciled == [False]
    finally:
        second.stop()
    assert not b.running and not lease_b.held()


def test_a_standby_that_loses_its_lease_stops_its_monitor_and_stands_by_again(tmp_path):
    class Flaky(leases.LocalLease):
        lost = False

        def held(self) -> bool:
            return super().held() and not self.lost

        def acquire(self) -> bool:
            return not self.lost and super().acquire()

    lease = Flaky()
    mon = RecordingMonitor()
    standby = Standby(mon, lease, startup=True, retry=0.05)
    standby.start()
    try:
        assert mon.running
        lease.lost = True
        assert wait_until(lambda: not mon.running)
        lease.lost = False
        assert wait_until(lambda: mon.running)
        # a later leadership may meet commands of other processes in flight: not a startup reconciliation
        assert mon.reconciled == [True, False]
    finally:
        standby.stop()


def test_a_database_that_refuses_the_lease_keeps_the_standby_waiting(tmp_path):
    class Down(leases.LocalLease):
        def acquire(self) -> bool:
            raise OSError("connection refused")

    mon = RecordingMonitor()
    standby = Standby(mon, Down(), retry=0.05)
    standby.start()
    time.sleep(0.2)
    standby.stop()
    assert not mon.running and mon.reconciled == []
