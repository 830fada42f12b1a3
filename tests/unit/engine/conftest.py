"""Shared fixtures of the engine's tests: a fresh database per test and factories for its rows.

The database is a SQLite file in the test's tmp dir, or the PostgreSQL named by the environment
variable PLUGBOARD_TEST_DB_URL (CI). When that variable is set the database must be reachable: the
tests fail rather than quietly fall back to SQLite.

Factories commit their rows in their own session and return them detached but fully loaded
(expire_on_commit=False), e.g.::

    def test_plug(sessions, make_vm, make_nic):
        vm = make_vm(status="up")
        nic = make_nic(vm, is_plugged=False)
        ...
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from engine.dao import db
from engine.dao.models import Base, Cluster, Host, Vm, VmDevice, VmNic
from tests import testdb



@pytest.fixture
def db_url(tmp_path) -> str:
    """PLUGBOARD_TEST_DB_URL when set, else a SQLite file of its own for this test."""
    return testdb.url() or f"sqlite:///{tmp_path / 'engine.db'}"


def connect_or_fail(engine: Engine) -> None:
    """Fail the test (never skip) when the configured database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # the driver's own error types vary
        pytest.fail(f"{testdb.ENV}={engine.url.render_as_string(hide_password=True)} "
                    f"is set but the database is unreachable: {exc}", pytrace=False)


#: PostgreSQL URLs whose tables this process has made from the models and no test has dropped since.
_made: set[str] = set()


def _empty_postgresql(engine: Engine) -> None:
    """Empty the models' tables and restart their sequences (5 ms), or make them anew when this process
    has not made them yet or a test dropped them (drop and create: 300 ms, the PostgreSQL tier's
    largest cost when every test paid it)."""
    url = engine.url.render_as_string(hide_password=False)
    if url in _made:
        deletes = [f'DELETE FROM "{table.name}"' for table in reversed(Base.metadata.sorted_tables)]
        try:
            with engine.begin() as conn:
                sequences = conn.scalars(text("SELECT sequencename FROM pg_sequences "
                                              "WHERE schemaname = current_schema()")).all()
                conn.exec_driver_sql("; ".join(deletes + [f'ALTER SEQUENCE "{s}" RESTART' for s in sequences]))
            return
        except DBAPIError:  # a table is missing: rebuild
            pass
    db.drop_all(engine)
    db.create_all(engine)
    _made.add(url)


def tables_dropped() -> None:
    """Tell the fixture that a test changed the schema itself (migrations), so the next one rebuilds it."""
    _made.clear()


@pytest.fixture
def engine_(db_url: str) -> Iterator[Engine]:
    """An engine on a database holding exactly the models' tables, empty."""
    engine = db.make_engine(db_url)
    if db.is_sqlite(engine):
        db.create_all(engine)
    else:
        connect_or_fail(engine)
        _empty_postgresql(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def sessions(engine_: Engine) -> sessionmaker[Session]:
    return db.make_sessions(engine_)


def _save(sessions: sessionmaker[Session], *rows: Any) -> None:
    with sessions.begin() as s:
        s.add_all(rows)


@pytest.fixture
def make_cluster(sessions: sessionmaker[Session]) -> Callable[..., Cluster]:
    counter = itertools.count(1)

    def make(name: str | None = None, **kw: Any) -> Cluster:
        cluster = Cluster(name=name or f"cluster{next(counter)}", **kw)
        _save(sessions, cluster)
        return cluster

    return make


def _default_cluster_id(sessions: sessionmaker[Session]) -> str:
    from engine.dao import clusters

    with sessions.begin() as s:
        return clusters.ensure_default(s).id


@pytest.fixture
def make_host(sessions: sessionmaker[Session]) -> Callable[..., Host]:
    counter = itertools.count(1)

    def make(name: str | None = None, *, cluster: Cluster | str | None = None,
             url: str = "http://127.0.0.1:54321/jsonrpc", status: str = "up",
             capabilities: dict[str, Any] | None = None, **kw: Any) -> Host:
        cluster_id = _id_of(cluster) or _default_cluster_id(sessions)
        caps = {"networks": {"ovirtmgmt": {}}, "bridges": {"ovirtmgmt": {}}} if capabilities is None \
            else capabilities
        host = Host(name=name or f"host{next(counter)}", cluster_id=cluster_id, url=url, status=status,
                    capabilities=caps, **kw)
        _save(sessions, host)
        return host

    return make


@pytest.fixture
def make_vm(sessions: sessionmaker[Session]) -> Callable[..., Vm]:
    counter = itertools.count(1)

    def make(name: str | None = None, *, cluster: Cluster | str | None = None,
             host: Host | str | None = None, status: str = "down", os_type: str = "rhel_9x64",
             **kw: Any) -> Vm:
        cluster_id = _id_of(cluster) or _default_cluster_id(sessions)
        vm = Vm(name=name or f"vm{next(counter)}", cluster_id=cluster_id, run_on_host=_id_of(host),
                status=status, os_type=os_type, **kw)
        _save(sessions, vm)
        return vm

    return make


@pytest.fixture
def make_nic(sessions: sessionmaker[Session]) -> Callable[..., VmNic]:
    """Adds a vm_devices row (type interface, device bridge, alias ua-<id>) and its vm_nics row.
    Returns the VmNic with `.device` loaded. MACs default to a locally administered range outside
    the default pool (02:00:00:00:xx:xx) so they never collide with pool allocations. A NIC that is
    plugged or in flight claims its MAC (vm_nics.claimed_mac), as the engine's transitions do."""
    counter = itertools.count(1)

    def make(vm: Vm | str, name: str | None = None, *, mac: str | None = None,
             network: str = "ovirtmgmt", model: str = "pv", linked: bool = True,
             is_plugged: bool = True, plug_state: str = "stable", address: dict[str, Any] | None = None,
             **device_kw: Any) -> VmNic:
        n = next(counter)
        vm_id = _id_of(vm)
        device = VmDevice(id=_new_id(), vm_id=vm_id, type="interface", device="bridge",
                          is_plugged=is_plugged, plug_state=plug_state, address=address, **device_kw)
        device.alias = f"ua-{device.id}"
        mac = (mac or f"02:00:00:00:{n >> 8 & 0xff:02x}:{n & 0xff:02x}").lower()
        nic = VmNic(id=device.id, vm_id=vm_id, name=name or f"nic{n}", mac=mac, network=network, model=model,
                    linked=linked, claimed_mac=mac if is_plugged or plug_state != "stable" else None)
        nic.device = device
        _save(sessions, device, nic)
        return nic

    return make


def _new_id() -> str:
    from engine.dao.models import new_id

    return new_id()


def _id_of(obj: Any) -> str | None:
    if obj is None or isinstance(obj, str):
        return obj
    return obj.id
