"""Fixtures of the command tests: a FakeHost registered as a host row, a running VM on it whose
domain exists on the fake, and small readers of the database."""
from __future__ import annotations

from typing import Any

import pytest

from engine.dao import audit, devices, nics, vms
from engine.dao import db as dao_db
from engine.dao.models import Host, Vm, VmDevice, VmNic
from tests.unit.engine.fakehost import FakeHost, FakeHosts

NETWORKS = ("ovirtmgmt", "br0")


@pytest.fixture
def fake() -> FakeHost:
    return FakeHost("host1", bridges=("ovirtmgmt", "br0"), networks=("default",))


@pytest.fixture
def hosts(fake: FakeHost) -> FakeHosts:
    return FakeHosts(fake)


@pytest.fixture
def host(make_host, fake: FakeHost) -> Host:
    return make_host(fake.name, capabilities=dict(fake.capabilities))


@pytest.fixture
def up_vm(make_vm, host: Host, fake: FakeHost) -> Vm:
    """A VM that runs on `host`: status up in the database, a domain on the fake host."""
    vm = make_vm(status="up", host=host, os_type="rhel_9x64")
    fake.add_domain(vm.id, vm.name)
    fake.calls.clear()
    return vm


@pytest.fixture
def down_vm(make_vm) -> Vm:
    return make_vm(status="down", os_type="rhel_9x64")


class Db:
    """Reads of the database for assertions (each in its own short transaction)."""

    def __init__(self, sessions) -> None:
        self.sessions = sessions

    def device(self, dev_id: str) -> VmDevice | None:
        with self.sessions.begin() as s:
            return devices.get(s, dev_id)

    def nic(self, vm_id: str, nic_id: str) -> VmNic | None:
        with self.sessions.begin() as s:
            return nics.get(s, vm_id, nic_id)

    def vm(self, vm_id: str) -> Vm | None:
        with self.sessions.begin() as s:
            return vms.get(s, vm_id)

    def events(self, vm_id: str | None = None, code: str | None = None) -> list[Any]:
        with self.sessions.begin() as s:
            return list(audit.list(s, vm_id=vm_id, code=code, limit=1000))

    def codes(self, vm_id: str | None = None) -> list[str]:
        return [e.code for e in self.events(vm_id)]

    def device_state(self, dev_id: str) -> tuple[Any, ...]:
        d = self.device(dev_id)
        assert d is not None
        return (d.is_plugged, d.plug_state, d.address, d.alias, d.last_error)

    def table_counts(self) -> dict[str, int]:
        from sqlalchemy import func, select

        from engine.dao.models import Base
        with self.sessions.begin() as s:
            return {t.name: s.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}


@pytest.fixture
def db(sessions) -> Db:
    return Db(sessions)


@pytest.fixture
def race_sessions(sessions, db_url):
    """A second engine on the test's database (its tables made by `sessions`), configured as the
    engine's production one."""
    kwargs: dict[str, Any] = {}
    if not dao_db.is_sqlite(db_url):
        kwargs.update(pool_size=25, max_overflow=10)
    engine = dao_db.make_engine(db_url, sqlite_begin="immediate", **kwargs)
    try:
        yield dao_db.make_sessions(engine)
    finally:
        engine.dispose()
