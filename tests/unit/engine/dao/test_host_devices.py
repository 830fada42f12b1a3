from __future__ import annotations

import threading

from engine.dao import host_devices
from engine.dao.models import HostDevice


def _usb(name: str, **kw):
    return {"name": name, "capability": "usb_device", "vendorId": "0x0781", "productId": "0x5567",
            "allowed": True, **kw}


def test_upsert_adds_updates_removes_and_brings_back(sessions, make_host):
    host = make_host()
    with sessions.begin() as s:
        change = host_devices.upsert_inventory(s, host.id, [_usb("usb_1_1"), _usb("usb_1_2")])
        assert sorted(change.added) == ["usb_1_1", "usb_1_2"]
    with sessions.begin() as s:
        change = host_devices.upsert_inventory(s, host.id, [_usb("usb_1_1", productName="Cruzer")])
        assert (change.updated, change.removed) == (["usb_1_1"], ["usb_1_2"])
    with sessions() as s:
        rows = {d.name: d for d in host_devices.list_for_host(s, host.id)}
        assert rows["usb_1_1"].product_name == "Cruzer" and rows["usb_1_1"].status == "available"
        assert rows["usb_1_2"].status == "removed"
    with sessions.begin() as s:
        change = host_devices.upsert_inventory(s, host.id, [_usb("usb_1_1", productName="Cruzer"), _usb("usb_1_2")])
        assert (change.added, change.updated, change.returned) == ([], [], ["usb_1_2"])
    with sessions() as s:
        assert host_devices.get_by_name(s, host.id, "usb_1_2").status == "available"


def test_upsert_keeps_claims_and_accepts_column_names(sessions, make_host, make_vm):
    host, vm = make_host(), make_vm()
    with sessions.begin() as s:
        host_devices.upsert_inventory(s, host.id, [_usb("usb_1_1")])
        dev = host_devices.get_by_name(s, host.id, "usb_1_1")
        assert host_devices.claim(s, dev.id, vm.id)
    with sessions.begin() as s:
        host_devices.upsert_inventory(s, host.id, [{"name": "usb_1_1", "capability": "usb_device",
                                                    "vendor_id": "0x0781", "product_id": "0x5567",
                                                    "serial": "ABC"}])
    with sessions() as s:
        row = host_devices.get(s, dev.id)
        assert (row.status, row.vm_id, row.serial) == ("claimed", vm.id, "ABC")
        assert [d.id for d in host_devices.list_for_vm(s, vm.id)] == [dev.id]


def test_claim_allocate_release(sessions, make_host, make_vm):
    host, vm, other = make_host(), make_vm(), make_vm()
    with sessions.begin() as s:
        host_devices.upsert_inventory(s, host.id, [_usb("usb_1_1")])
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
        host_devices.upsert_inventory(s, host.id, [_usb("usb_1_1")])
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
