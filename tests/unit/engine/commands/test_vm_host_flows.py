"""VM, cluster and host commands end to end over the dao fixtures and a FakeHost."""
from __future__ import annotations

import pytest

from engine.commands import (add_cluster, add_host, add_vm, plug_unplug_nic, refresh_host, remove_vm, run_vm,
                             stop_vm)
from engine.dao import host_devices, hosts as hosts_dao
from engine.errors import HostCallFailed, HostUnreachable, NotFound, ValidationFailed
from tests.unit.engine.fakehost import FakeHost

KEPT = {"type": "pci", "domain": "0x0000", "bus": "0x00", "slot": "0x09", "function": "0x0"}


def test_run_vm_sends_only_plugged_devices_with_aliases(sessions, hosts, fake, host, make_vm, make_nic, db):
    vm = make_vm(status="down", memory_mb=512, vcpus=2, machine="q35",
                 boot={"kernel": "/var/lib/images/vmlinuz", "cmdline": "console=ttyS0"})
    kept = make_nic(vm, "eth0", network="br0", address=KEPT)
    fresh = make_nic(vm, "eth1", network="ovirtmgmt", linked=False)
    off = make_nic(vm, "eth2", network="storage", is_plugged=False)
    out = run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    assert out.id == vm.id
    [create] = fake.sent("VM.create")
    params = create["params"]
    assert (params["name"], params["memSize"], params["vcpus"], params["machine"]) == (vm.name, 512, 2, "q35")
    assert params["kernel"] == "/var/lib/images/vmlinuz" and params["cmdline"] == "console=ttyS0"
    sent = {d["alias"]: d for d in params["devices"]}
    assert set(sent) == {f"ua-{kept.id}", f"ua-{fresh.id}"}           # not the deactivated one
    assert sent[f"ua-{kept.id}"]["address"] == KEPT
    assert "address" not in sent[f"ua-{fresh.id}"]
    assert sent[f"ua-{fresh.id}"]["linkActive"] is False
    # the addresses libvirt assigned are stored by alias
    assert db.device(kept.id).address == KEPT
    assert db.device(fresh.id).address == fake.domain(vm.id).find(alias=f"ua-{fresh.id}")["address"]
    assert db.device(off.id).address is None
    got = db.vm(vm.id)
    assert (got.status, got.run_on_host) == ("up", host.id)
    assert db.codes(vm.id) == ["VM_STARTED"]


def test_run_vm_then_hotplug_then_stop_keeps_addresses(sessions, hosts, fake, host, make_vm, make_nic, db):
    vm = make_vm(status="down")
    a = make_nic(vm, "eth0")
    b = make_nic(vm, "eth1", is_plugged=False)
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id, host.id))
    plug_unplug_nic.execute(sessions, hosts, plug_unplug_nic.Params(vm.id, b.id, True))
    addresses = {n.id: db.device(n.id).address for n in (a, b)}
    assert addresses[a.id] != addresses[b.id]
    stop_vm.execute(sessions, hosts, stop_vm.Params(vm.id))
    assert fake.sent("VM.destroy") == [{"vmId": vm.id}]
    got = db.vm(vm.id)
    assert (got.status, got.run_on_host) == ("down", None)
    assert {n.id: db.device(n.id).address for n in (a, b)} == addresses
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    sent = {d["alias"]: d.get("address") for d in fake.sent("VM.create")[-1]["params"]["devices"]}
    assert sent == {f"ua-{a.id}": addresses[a.id], f"ua-{b.id}": addresses[b.id]}
    assert db.codes(vm.id) == ["VM_STARTED", "NIC_PLUGGED", "VM_STOPPED", "VM_STARTED"]


def test_run_vm_failure_leaves_vm_down_with_the_host_code(sessions, hosts, fake, host, make_vm, db):
    vm = make_vm(status="down")
    fake.fail("VM.create", "createErr")
    with pytest.raises(HostCallFailed) as err:
        run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    assert err.value.host_code == 9
    got = db.vm(vm.id)
    assert (got.status, got.run_on_host) == ("down", None)
    [event] = db.events(vm.id)
    assert (event.code, event.host_code) == ("VM_START_FAILED", 9)


def test_run_vm_on_unreachable_host(sessions, hosts, fake, host, make_vm, db):
    vm = make_vm(status="down")
    fake.unreachable = True
    with pytest.raises(HostUnreachable) as err:
        run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    assert err.value.host == "host1"
    assert db.vm(vm.id).status == "down"
    assert db.codes(vm.id) == ["HOST_UNREACHABLE"]


def test_run_vm_without_a_host_with_the_networks(sessions, hosts, fake, host, make_vm, make_nic, db):
    vm = make_vm(status="down")
    make_nic(vm, network="storage")
    with pytest.raises(ValidationFailed) as err:
        run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    assert [r.code for r in err.value.reasons] == ["NO_HOST_AVAILABLE"]
    assert fake.calls == [] and db.vm(vm.id).status == "down"
    assert db.codes(vm.id) == ["VM_START_REFUSED"]


def test_run_vm_already_up(sessions, hosts, up_vm):
    with pytest.raises(ValidationFailed) as err:
        run_vm.execute(sessions, hosts, run_vm.Params(up_vm.id))
    assert [r.code for r in err.value.reasons] == ["VM_NOT_DOWN"]


def test_scheduler_picks_the_least_loaded_host_with_the_networks(sessions, hosts, make_host, make_vm, make_nic, db):
    caps = {"bridges": ["br0"], "networks": []}
    busy = make_host("busy", capabilities=caps)
    idle = make_host("idle", capabilities=caps)
    make_host("down", capabilities=caps, status="maintenance")
    make_host("nobridge", capabilities={"bridges": [], "networks": []})
    make_vm(status="up", host=busy)
    vm = make_vm(status="down")
    make_nic(vm, network="br0")
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    assert db.vm(vm.id).run_on_host == idle.id
    assert hosts["idle"].sent("VM.create") and not hosts["busy"].calls


def test_stop_vm_finishes_operations_left_in_flight(sessions, hosts, fake, up_vm, make_nic, db):
    nic = make_nic(up_vm, is_plugged=False)
    plug_unplug_nic.execute(sessions, hosts, plug_unplug_nic.Params(up_vm.id, nic.id, True))
    fake.pending_unplug = True
    assert plug_unplug_nic.execute(sessions, hosts, plug_unplug_nic.Params(up_vm.id, nic.id, False)).pending
    stop_vm.execute(sessions, hosts, stop_vm.Params(up_vm.id))
    assert db.device_state(nic.id)[:3] == (False, "stable", None)


def test_stop_vm_whose_domain_is_gone(sessions, hosts, fake, up_vm, db):
    del fake.domains[up_vm.id]
    stop_vm.execute(sessions, hosts, stop_vm.Params(up_vm.id))
    assert db.vm(up_vm.id).status == "down"


def test_stop_vm_on_unreachable_host_changes_nothing(sessions, hosts, fake, up_vm, db):
    fake.unreachable = True
    with pytest.raises(HostUnreachable):
        stop_vm.execute(sessions, hosts, stop_vm.Params(up_vm.id))
    got = db.vm(up_vm.id)
    assert (got.status, got.run_on_host) == ("up", up_vm.run_on_host)


def test_stop_vm_failure(sessions, hosts, fake, up_vm, db):
    fake.fail("VM.destroy", "unexpected")
    with pytest.raises(HostCallFailed):
        stop_vm.execute(sessions, hosts, stop_vm.Params(up_vm.id))
    assert db.vm(up_vm.id).status == "up"
    assert db.events(up_vm.id)[-1].host_code == 16


def test_stop_vm_down(sessions, hosts, down_vm):
    with pytest.raises(ValidationFailed):
        stop_vm.execute(sessions, hosts, stop_vm.Params(down_vm.id))


def test_add_and_remove_vm(sessions, hosts, db):
    out = add_vm.execute(sessions, hosts, add_vm.Params("web1", os_type="debian_12", memory_mb=512))
    assert out.created
    vm = db.vm(out.id)
    assert (vm.name, vm.status, vm.os_type, vm.memory_mb) == ("web1", "down", "debian_12", 512)
    with pytest.raises(ValidationFailed) as err:
        add_vm.execute(sessions, hosts, add_vm.Params("web1"))
    assert [r.code for r in err.value.reasons] == ["NAME_IN_USE"]
    remove_vm.execute(sessions, hosts, remove_vm.Params(out.id))
    assert db.vm(out.id) is None
    assert db.codes(out.id) == ["VM_ADDED", "VM_REMOVED"]
    with pytest.raises(NotFound):
        remove_vm.execute(sessions, hosts, remove_vm.Params(out.id))


def test_add_vm_to_unknown_cluster(sessions, hosts):
    with pytest.raises(ValidationFailed) as err:
        add_vm.execute(sessions, hosts, add_vm.Params("web1", cluster_id="nope"))
    assert [r.code for r in err.value.reasons] == ["CLUSTER_NOT_FOUND"]


def test_remove_running_vm_is_refused(sessions, hosts, up_vm, db):
    with pytest.raises(ValidationFailed) as err:
        remove_vm.execute(sessions, hosts, remove_vm.Params(up_vm.id))
    assert [r.code for r in err.value.reasons] == ["VM_NOT_DOWN"]
    assert db.vm(up_vm.id) is not None


def test_add_cluster(sessions, hosts, db):
    out = add_cluster.execute(sessions, hosts, add_cluster.Params("old", "3.0"))
    assert out.created
    with pytest.raises(ValidationFailed):
        add_cluster.execute(sessions, hosts, add_cluster.Params("old"))
    assert db.codes() == ["CLUSTER_ADDED", "CLUSTER_ADD_REFUSED"]


def test_add_host_stores_capabilities(sessions, hosts, db):
    hosts.add(FakeHost("h9", bridges=("br7",)))
    out = add_host.execute(sessions, hosts, add_host.Params("h9", "http://127.0.0.1:54321/jsonrpc"))
    assert out.created
    with sessions.begin() as s:
        h = hosts_dao.get(s, out.id)
        assert (h.status, h.capabilities["bridges"], h.url) == ("up", ["br7"], "http://127.0.0.1:54321/jsonrpc")
        assert h.last_refresh is not None
    assert db.codes() == ["HOST_ADDED"]


USB_KEY = {"name": "usb_1_5", "capability": "usb_device", "vendorId": "0781", "productId": "5567",
           "portPath": "1-2", "serial": "K1", "allowed": True}


def test_add_host_stores_its_devices(sessions, hosts, db):
    hosts.add(FakeHost("h9"))
    hosts["h9"].hostdevs.append(dict(USB_KEY))
    out = add_host.execute(sessions, hosts, add_host.Params("h9", "http://127.0.0.1:54321/jsonrpc"))
    with sessions.begin() as s:
        (dev,) = host_devices.list_for_host(s, out.id)
        assert (dev.name, dev.serial, dev.status) == ("usb_1_5", "K1", "available")
    assert db.codes() == ["HOST_ADDED", "HOST_DEVICES_SYNCED"]


def test_a_host_that_cannot_list_its_devices_is_added_with_a_warning(sessions, hosts, db):
    hosts.add(FakeHost("h9"))
    hosts["h9"].fail("Host.hostdevListByCaps", "unexpected")
    out = add_host.execute(sessions, hosts, add_host.Params("h9", "http://127.0.0.1:54321/jsonrpc"))
    assert out.created
    assert db.codes() == ["HOST_DEVICES_UNREAD", "HOST_ADDED"]


def test_add_unreachable_host_is_not_added(sessions, hosts, db):
    hosts["h9"].unreachable = True
    with pytest.raises(HostUnreachable):
        add_host.execute(sessions, hosts, add_host.Params("h9", "http://127.0.0.1:1/jsonrpc"))
    assert db.table_counts()["hosts"] == 0
    assert db.codes() == ["HOST_UNREACHABLE"]


def test_refresh_host(sessions, hosts, fake, host, db):
    fake.capabilities["bridges"].append("br9")
    refresh_host.execute(sessions, hosts, refresh_host.Params(host.id))
    with sessions.begin() as s:
        assert "br9" in hosts_dao.get(s, host.id).capabilities["bridges"]
    fake.unreachable = True
    with pytest.raises(HostUnreachable):
        refresh_host.execute(sessions, hosts, refresh_host.Params(host.id))
    with sessions.begin() as s:
        assert hosts_dao.get(s, host.id).status == "unreachable"
    assert db.codes() == ["HOST_REFRESHED", "HOST_UNREACHABLE"]
    fake.unreachable = False
    fake.hostdevs.append(dict(USB_KEY))
    refresh_host.execute(sessions, hosts, refresh_host.Params(host.id))
    with sessions.begin() as s:
        assert [d.name for d in host_devices.list_for_host(s, host.id)] == ["usb_1_5"]
    with pytest.raises(NotFound):
        refresh_host.execute(sessions, hosts, refresh_host.Params("nope"))

