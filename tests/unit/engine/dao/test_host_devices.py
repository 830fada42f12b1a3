from __future__ import annotations

import threading

import pytest

from engine.dao import host_devices
from engine.dao.models import HostDevice


def _usb(name: str, **kw):
    return {"name": name, "capability": "usb_device", "vendorId": "0x0781", "productId": "0x5567",
            "allowed": True, **kw}


def _rows(sessions, host_id):
    with sessions() as s:
        return {d.identity: d for d in host_devices.list_for_host(s, host_id)}


def test_sync_adds_updates_removes_and_brings_back(sessions, make_host):
    host = make_host()
    key = _usb("usb_1_1", portPath="1-1", serial="A1")
    other = _usb("usb_1_2", portPath="1-2")
    with sessions.begin() as s:
        change = host_devices.sync(s, host.id, [key, other])
        assert len(change.added) == 2 and not change.updated
    with sessions.begin() as s:
        change = host_devices.sync(s, host.id, [{**key, "productName": "Cruzer"}])
        assert (len(change.updated), len(change.removed)) == (1, 1)
    rows = _rows(sessions, host.id)
    cruzer = rows["usb_device:1-1:0x0781:0x5567:A1"]
    assert (cruzer.product_name, cruzer.status) == ("Cruzer", "available")
    assert rows["usb_device:1-2:0x0781:0x5567:"].status == "removed"
    with sessions.begin() as s:
        change = host_devices.sync(s, host.id, [{**key, "productName": "Cruzer"}, other])
        assert (change.added, change.updated, len(change.returned)) == ([], [], 1)
    assert _rows(sessions, host.id)["usb_device:1-2:0x0781:0x5567:"].status == "available"
    with sessions.begin() as s:
        assert not host_devices.sync(s, host.id, [{**key, "productName": "Cruzer"}, other])   # nothing changed


def test_a_replugged_device_is_found_again_by_its_identity_not_its_name(sessions, make_host):
    """The host gives a device a new name and bus/device number on every plug."""
    host = make_host()
    with sessions.begin() as s:
        dev_id = host_devices.sync(s, host.id, [_usb("usb_1_5", portPath="1-2", serial="K", bus=1, device=5)]).added[0]
    with sessions.begin() as s:
        host_devices.sync(s, host.id, [])
    with sessions.begin() as s:
        change = host_devices.sync(s, host.id, [_usb("usb_1_9", portPath="1-2", serial="K", bus=1, device=9)])
        assert change.returned == [dev_id] and not change.added
        row = host_devices.get(s, dev_id)
        assert (row.name, row.device, row.status) == ("usb_1_9", 9, "available")
        assert host_devices.get_by_name(s, host.id, "usb_1_9").id == dev_id


def test_another_device_on_a_known_port_is_a_new_device(sessions, make_host):
    host = make_host()
    with sessions.begin() as s:
        old = host_devices.sync(s, host.id, [_usb("usb_1_5", portPath="1-2", serial="K")]).added[0]
    with sessions.begin() as s:
        change = host_devices.sync(s, host.id, [_usb("usb_1_5", portPath="1-2", serial="OTHER")])
        assert change.removed == [old] and len(change.added) == 1 and change.added[0] != old
        assert host_devices.get_by_name(s, host.id, "usb_1_5").id == change.added[0]


def test_the_whitelist_makes_a_free_device_unavailable_and_back(sessions, make_host):
    host = make_host()
    with sessions.begin() as s:
        dev_id = host_devices.sync(s, host.id, [_usb("usb_1_1", allowed=False)]).added[0]
        assert host_devices.get(s, dev_id).status == "unavailable"
    with sessions.begin() as s:
        host_devices.sync(s, host.id, [_usb("usb_1_1", allowed=True)])
        assert host_devices.get(s, dev_id).status == "available"


def test_a_held_device_that_vanishes_stays_with_its_vm_flagged(sessions, make_host, make_vm):
    host, vm = make_host(), make_vm()
    with sessions.begin() as s:
        dev_id = host_devices.sync(s, host.id, [_usb("usb_1_1", portPath="1-1")]).added[0]
        assert host_devices.claim(s, dev_id, vm.id) and host_devices.allocate(s, dev_id, vm.id)
    with sessions.begin() as s:
        change = host_devices.sync(s, host.id, [])
        assert change.lost == [dev_id] and not change.removed
        row = host_devices.get(s, dev_id)
        assert (row.status, row.vm_id, row.present) == ("allocated", vm.id, False)
    with sessions.begin() as s:
        assert host_devices.sync(s, host.id, [_usb("usb_1_3", portPath="1-1")]).found == [dev_id]
        assert host_devices.get(s, dev_id).present is True
        host_devices.sync(s, host.id, [])
        assert host_devices.release(s, dev_id, vm.id)      # let go while gone: it is removed, not available
        assert (host_devices.get(s, dev_id).status, host_devices.get(s, dev_id).vm_id) == ("removed", None)


def test_a_sync_of_one_capability_leaves_the_others_alone(sessions, make_host):
    host = make_host()
    pci = {"name": "pci_0000_01_00_0", "capability": "pci", "vendorId": "8086", "productId": "10d3",
           "pciAddress": "0000:01:00.0", "allowed": True}
    with sessions.begin() as s:
        host_devices.sync(s, host.id, [_usb("usb_1_1"), pci])
        change = host_devices.sync(s, host.id, [], capabilities=["usb_device"])
        assert len(change.removed) == 1
    assert [d.status for d in _rows(sessions, host.id).values() if d.capability == "pci"] == ["available"]


def test_sync_refuses_a_device_reported_twice(sessions, make_host):
    host = make_host()
    with sessions.begin() as s, pytest.raises(ValueError, match="reported twice"):
        host_devices.sync(s, host.id, [_usb("usb_1_1", portPath="1-1"), _usb("usb_1_7", portPath="1-1")])


def test_sync_keeps_claims_and_accepts_column_names(sessions, make_host, make_vm):
    host, vm = make_host(), make_vm()
    with sessions.begin() as s:
        dev_id = host_devices.sync(s, host.id, [_usb("usb_1_1", serial="ABC")]).added[0]
        assert host_devices.claim(s, dev_id, vm.id)
    with sessions.begin() as s:
        host_devices.sync(s, host.id, [{"name": "usb_1_1", "capability": "usb_device", "vendor_id": "0x0781",
                                        "product_id": "0x5567", "serial": "ABC", "bus": 3}])
    with sessions() as s:
        row = host_devices.get(s, dev_id)
        assert (row.status, row.vm_id, row.bus) == ("claimed", vm.id, 3)
        assert [d.id for d in host_devices.list_for_vm(s, vm.id)] == [dev_id]


def test_claim_allocate_release(sessions, make_host, make_vm):
    host, vm, other = make_host(), make_vm(), make_vm()
    with sessions.begin() as s:
        host_devices.sync(s, host.id, [_usb("usb_1_1")])
        dev_id = host_devices.get_by_name(s, host.id, "usb_1_1").id
        assert host_devices.claim(s, dev_id, vm.id)
        assert not host_devices.claim(s, dev_id, other.id)
        assert not host_devices.allocate(s, dev_id, other.id)
        assert host_devices.allocate(s, dev_id, vm.id)
        assert not host_devices.release(s, dev_id, other.id)
        assert host_devices.release(s, dev_id, vm.id)
        assert host_devices.get(s, dev_id).status == "available"
        assert host_devices.claim(s, dev_id, other.id)
        assert host_devices.release_for_vm(s, other.id) == 1
        assert host_devices.get(s, dev_id).vm_id is None


def test_two_vms_racing_for_one_device_exactly_one_gets_it(sessions, make_host, make_vm):
    host = make_host()
    contenders = [make_vm() for _ in range(4)]
    with sessions.begin() as s:
        host_devices.sync(s, host.id, [_usb("usb_1_1")])
        dev_id = host_devices.get_by_name(s, host.id, "usb_1_1").id
    barrier = threading.Barrier(len(contenders))
    results: dict[str, object] = {}

    def run(vm_id: str) -> None:
        barrier.wait()
        try:
            with sessions.begin() as s:
                results[vm_id] = host_devices.claim(s, dev_id, vm_id)
        except Exception as exc:  # reported by the assertion below
            results[vm_id] = exc

    threads = [threading.Thread(target=run, args=(vm.id,)) for vm in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [vm_id for vm_id, won in results.items() if won is True]
    assert len(winners) == 1 and sum(r is False for r in results.values()) == 3, results
    with sessions() as s:
        row = s.get(HostDevice, dev_id)
        assert (row.status, row.vm_id) == ("claimed", winners[0])
