from __future__ import annotations

from sqlalchemy import func, select

from engine.dao import audit, clusters, host_devices, nics, vms
from engine.dao.models import HostDevice, VmDevice, VmNic


def test_vm_lookups_and_project_filter(sessions, make_vm):
    a = make_vm("a", project_id="p1")
    make_vm("b", project_id="p2")
    with sessions() as s:
        assert vms.get(s, a.id).name == "a"
        assert vms.get_by_name(s, "b").project_id == "p2"
        assert vms.get_by_name(s, "zzz") is None
        assert [v.name for v in vms.list(s)] == ["a", "b"]
        assert [v.name for v in vms.list(s, project_id="p1")] == ["a"]


def test_set_status_cas(sessions, make_vm, make_host):
    host = make_host()
    vm = make_vm()
    with sessions.begin() as s:
        assert vms.set_status_cas(s, vm.id, ("down",), "powering_up", run_on_host=host.id)
        assert not vms.set_status_cas(s, vm.id, ("down",), "powering_up")
        assert vms.set_status_cas(s, vm.id, ("powering_up",), "up")
    with sessions() as s:
        row = vms.get(s, vm.id)
        assert (row.status, row.run_on_host) == ("up", host.id)
        assert [v.id for v in vms.list_on_host(s, host.id, ("up",))] == [vm.id]
    with sessions.begin() as s:
        assert vms.set_status_cas(s, vm.id, ("up", "paused"), "down", run_on_host=None)
    with sessions() as s:
        assert vms.get(s, vm.id).run_on_host is None


def test_deleting_a_vm_removes_its_devices_and_nics_and_releases_host_devices(sessions, make_vm, make_nic,
                                                                             make_host):
    vm = make_vm()
    other = make_vm()
    make_nic(vm)
    make_nic(vm)
    kept = make_nic(other)
    host = make_host()
    with sessions.begin() as s:
        host_devices.sync(s, host.id, [{"name": "usb_1_2", "capability": "usb_device",
                                                    "vendorId": "0x1234", "productId": "0x5678", "allowed": True}])
        dev = host_devices.get_by_name(s, host.id, "usb_1_2")
        assert host_devices.claim(s, dev.id, vm.id)
    with sessions.begin() as s:
        assert vms.delete(s, vm.id)
        assert not vms.delete(s, "no-such-vm")
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(VmDevice).where(VmDevice.vm_id == vm.id)) == 0
        assert s.scalar(select(func.count()).select_from(VmNic).where(VmNic.vm_id == vm.id)) == 0
        assert [n.id for n in nics.list_for_vm(s, other.id)] == [kept.id]
        hd = s.scalars(select(HostDevice)).one()
        assert (hd.status, hd.vm_id) == ("available", None)


def test_database_cascade_without_the_orm(sessions, make_vm, make_nic):
    """ON DELETE CASCADE is in the schema itself (foreign_keys=ON on SQLite)."""
    from sqlalchemy import delete

    from engine.dao.models import Vm

    vm = make_vm()
    make_nic(vm)
    with sessions.begin() as s:
        s.execute(delete(Vm).where(Vm.id == vm.id))
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(VmDevice)) == 0
        assert s.scalar(select(func.count()).select_from(VmNic)) == 0


def test_nic_add_get_list(sessions, make_vm):
    vm = make_vm()
    with sessions.begin() as s:
        nic = nics.add(s, vm.id, name="nic1", mac="56:6F:1A:00:00:01", network="ovirtmgmt")
        assert nic.device.alias == f"ua-{nic.id}" and nic.device.type == "interface"
        nics.add(s, vm.id, name="nic0", mac="56:6f:1a:00:00:02", network="ovirtmgmt", is_plugged=False)
    with sessions() as s:
        got = nics.get(s, vm.id, nic.id)
        assert got.mac == "56:6f:1a:00:00:01" and got.device.is_plugged
        assert nics.get(s, "other-vm", nic.id) is None
        assert [n.name for n in nics.list_for_vm(s, vm.id)] == ["nic0", "nic1"]
        assert [n.name for n in nics.list_for_vm(s, vm.id, plugged=True)] == ["nic1"]
        assert nics.get_by_name(s, vm.id, "nic0").mac == "56:6f:1a:00:00:02"
        assert nics.name_in_use(s, vm.id, "nic1")
        assert not nics.name_in_use(s, vm.id, "nic1", exclude_nic_id=nic.id)


def test_mac_in_use(sessions, make_vm, make_nic):
    vm1, vm2 = make_vm(), make_vm()
    plugged = make_nic(vm1, mac="02:00:00:00:aa:01")
    make_nic(vm2, mac="02:00:00:00:aa:02", is_plugged=False)
    with sessions() as s:
        assert nics.mac_in_use(s, "02:00:00:00:AA:01")
        assert not nics.mac_in_use(s, "02:00:00:00:aa:01", exclude_nic_id=plugged.id)
        assert not nics.mac_in_use(s, "02:00:00:00:aa:02")                     # unplugged only
        assert nics.mac_in_use(s, "02:00:00:00:aa:02", plugged_only=False)
        assert not nics.mac_in_use(s, "02:00:00:00:aa:03", plugged_only=False)


def test_clusters_and_audit_record_list(sessions, make_vm):
    with sessions.begin() as s:
        default = clusters.ensure_default(s)
        assert clusters.ensure_default(s).id == default.id
    vm = make_vm()
    with sessions.begin() as s:
        first = audit.record(s, "NIC_ADDED", "NIC nic1 added", vm_id=vm.id, nic="nic1")
        assert first.id is not None
        audit.record(s, "HOST_UNREACHABLE", "host1 unreachable", severity="warning", host_id="h1")
        audit.record(s, "NIC_PLUG_FAILED", "Failed to hotplug NIC", severity="error", vm_id=vm.id,
                     device_id="d1", host_id="h1", host_code=49, host_message="Failed to hotplug NIC")
    with sessions() as s:
        events = audit.list(s, vm_id=vm.id)
        assert [e.code for e in events] == ["NIC_ADDED", "NIC_PLUG_FAILED"]
        assert events[0].vars == {"nic": "nic1"}
        assert (events[1].severity, events[1].host_code) == ("error", 49)
        assert [e.code for e in audit.list(s, after_id=first.id)] == ["HOST_UNREACHABLE", "NIC_PLUG_FAILED"]
        assert len(audit.list(s, limit=1)) == 1
        assert [e.code for e in audit.list(s, code="HOST_UNREACHABLE")] == ["HOST_UNREACHABLE"]
    with sessions.begin() as s:
        import pytest
        with pytest.raises(ValueError):
            audit.record(s, "X", "bad severity", severity="fatal")


def test_hosts_queries(sessions, make_host, make_cluster):
    from engine.dao import hosts

    c = make_cluster("c1")
    h = make_host("h1", cluster=c)
    make_host("h2", status="unreachable")
    with sessions.begin() as s:
        assert hosts.update_capabilities(s, h.id, {"networks": {"br0": {}}})
        assert hosts.update_capabilities(s, h.id, {"networks": {"br0": {}}}, agent_id="a" * 36)
        assert hosts.get_by_agent(s, "a" * 36).id == h.id and hosts.get_by_agent(s, "b" * 36) is None
        assert hosts.take_events(s, h.id, 0, 5)
        assert not hosts.take_events(s, h.id, 0, 3)     # the mark is no longer at 0: taken already
        assert hosts.set_status(s, h.id, "maintenance")
    with sessions() as s:
        row = hosts.get_by_name(s, "h1")
        assert (row.capabilities, row.last_event_seq, row.status) == ({"networks": {"br0": {}}}, 5, "maintenance")
        assert row.last_refresh is not None
        assert [x.name for x in hosts.list(s, cluster_id=c.id)] == ["h1"]
        assert [x.name for x in hosts.list(s, status="unreachable")] == ["h2"]


def test_a_host_read_detached_is_the_row_as_a_session_would_load_it(sessions, make_host):
    """The monitor's read before every long poll: a Core statement into a detached Host, the same
    values as an ORM load, usable after its connection is gone; None for a host that is not there."""
    from sqlalchemy import inspect

    from engine.dao import hosts

    h = make_host("h1")
    with sessions.begin() as s:
        hosts.update_capabilities(s, h.id, {"networks": {"br0": {}}})
        hosts.take_events(s, h.id, 0, 7)
    with sessions.kw["bind"].connect() as conn:
        row = hosts.read_detached(conn, h.id)
        assert hosts.read_detached(conn, "no-such-host") is None
    assert row is not None and inspect(row).detached
    with sessions() as s:
        loaded = hosts.get(s, h.id)
        columns = [c.key for c in inspect(loaded).mapper.column_attrs]
        assert {k: getattr(row, k) for k in columns} == {k: getattr(loaded, k) for k in columns}
    assert (row.last_event_seq, row.capabilities) == (7, {"networks": {"br0": {}}})


def test_mac_taken_read_with_the_plug_loader_or_by_its_own_statement(sessions, make_vm, make_nic):
    """VmNic.mac_taken comes with the plug loader's row; a NIC loaded otherwise is asked by a
    statement of its own. Both answer whether another NIC claims the MAC."""
    vm1, vm2 = make_vm(), make_vm()
    make_nic(vm1, mac="02:00:00:00:bb:01")                                   # plugged: claims it
    taken = make_nic(vm2, mac="02:00:00:00:bb:01", is_plugged=False)
    free = make_nic(vm2, mac="02:00:00:00:bb:02", is_plugged=False)
    with sessions.begin() as s:
        for nic, expected in ((taken, True), (free, False)):
            _vm, dev = vms.get_with_device(s, vm2.id, nic.id)
            assert dev.nic.mac_taken is expected
            assert nics.mac_taken(s, dev.nic) is expected
    with sessions() as s:
        for nic, expected in ((taken, True), (free, False)):
            plain = nics.get(s, vm2.id, nic.id)
            assert plain.mac_taken is None
            assert nics.mac_taken(s, plain) is expected
