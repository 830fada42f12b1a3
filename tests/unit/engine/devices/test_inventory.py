"""A host's inventory read from its agent and stored (engine.devices.inventory.refresh), the whole of it
or, after a journal event, only the device the event names: the same rows, the same audit events.
The agent is the contract-checked FakeHost, so what the engine asks is valid against schema/."""
from __future__ import annotations

from typing import Any

import pytest

from engine.dao import audit, host_devices
from engine.devices import inventory
from tests.unit.engine.fakehost import FakeHost, FakeHosts

WHY = " (the host reported a change)"


def _usb(name: str, port: str = "1-2", serial: str = "K", device: int = 5) -> dict[str, Any]:
    return {"name": name, "capability": "usb_device", "vendorId": "0781", "productId": "5567",
            "productName": "Cruzer Blade", "bus": 1, "device": device, "portPath": port, "serial": serial,
            "allowed": True}


@pytest.fixture
def agent() -> FakeHost:
    return FakeHost("h1")


@pytest.fixture
def host(make_host, agent, sessions):
    """Host h1 with two keys, its inventory read."""
    host = make_host("h1")
    agent.hostdevs[:] = [_usb("usb_1_5"), _usb("usb_1_6", port="1-3", serial="K2", device=6)]
    inventory.refresh(sessions, FakeHosts(agent), host)
    return host


@pytest.fixture(params=["full", "event"])
def changed(request, sessions, agent, host):
    """Store what the host reports after a device event naming `name`: the whole inventory read again
    (full) or that device alone (event). Returns the audit events it wrote, as comparable tuples."""
    def changed(name: str) -> list[tuple[Any, ...]]:
        with sessions() as s:
            last = max((e.id for e in audit.list(s, limit=1000)), default=0)
        asked = {"caps": ["usb_device"]} if request.param == "full" else {"caps": ["usb_device"], "names": [name]}
        inventory.refresh(sessions, FakeHosts(agent), host, ["usb_device"], why=WHY, names=asked.get("names"))
        assert agent.sent("Host.hostdevListByCaps")[-1] == asked
        with sessions() as s:
            return [(e.code, e.severity, e.vm_id, e.vars.get("host_device_id"), e.message, e.vars.get("changes"))
                    for e in audit.list(s, after_id=last, limit=1000)]
    return changed


def _id(sessions, host, name: str) -> int:
    with sessions() as s:
        return host_devices.get_by_name(s, host.id, name).id


def _held_by(sessions, host, vm, name: str) -> int:
    dev_id = _id(sessions, host, name)
    with sessions.begin() as s:
        assert host_devices.claim(s, dev_id, vm.id) and host_devices.allocate(s, dev_id, vm.id)
    return dev_id


def test_a_plugged_device_is_added(changed, agent):
    agent.hostdevs.append(_usb("usb_1_7", port="1-4", serial="K3", device=7))
    assert changed("usb_1_7") == [("HOST_DEVICES_SYNCED", "info", None, None, f"Host h1 devices{WHY}: 1 added",
                                   {"added": 1})]


def test_a_replugged_free_device_returns(changed, agent, sessions, host):
    stick = _id(sessions, host, "usb_1_5")
    del agent.hostdevs[0]
    assert changed("usb_1_5") == [("HOST_DEVICES_SYNCED", "info", None, None, f"Host h1 devices{WHY}: 1 removed",
                                   {"removed": 1})]
    agent.hostdevs.append(_usb("usb_1_9", device=9))
    assert changed("usb_1_9") == [("HOST_DEVICES_SYNCED", "info", None, None,
                                   f"Host h1 devices{WHY}: 1 updated, 1 returned", {"updated": 1, "returned": 1})]
    assert _id(sessions, host, "usb_1_9") == stick


def test_another_device_on_a_known_port_is_new(changed, agent, sessions, host):
    stick = _id(sessions, host, "usb_1_5")
    agent.hostdevs[0] = _usb("usb_1_5", serial="ANOTHER")
    assert changed("usb_1_5") == [("HOST_DEVICES_SYNCED", "info", None, None,
                                   f"Host h1 devices{WHY}: 1 added, 1 removed", {"added": 1, "removed": 1})]
    assert _id(sessions, host, "usb_1_5") != stick


def test_a_held_device_pulled_is_told_to_its_vm_and_again_when_it_returns(changed, agent, sessions, host,
                                                                           make_vm):
    vm = make_vm("vm1")
    stick = _held_by(sessions, host, vm, "usb_1_5")
    del agent.hostdevs[0]
    assert changed("usb_1_5") == [
        ("HOST_DEVICES_SYNCED", "info", None, None, f"Host h1 devices{WHY}: 1 lost", {"lost": 1}),
        ("HOST_DEVICE_LOST", "warning", vm.id, stick, "Host usb_device device 0781:5567 (Cruzer Blade) at 1-2 is "
         "gone from host h1; it stays with VM vm1 until it comes back or is detached", None)]
    agent.hostdevs.append(_usb("usb_1_8", device=8))
    assert changed("usb_1_8") == [
        ("HOST_DEVICES_SYNCED", "info", None, None, f"Host h1 devices{WHY}: 1 updated, 1 found",
         {"updated": 1, "found": 1}),
        ("HOST_DEVICE_FOUND", "info", vm.id, stick, "Host usb_device device 0781:5567 (Cruzer Blade) at 1-2 is "
         "back on host h1, held by VM vm1", None)]
    with sessions() as s:
        row = host_devices.get(s, stick)
        assert (row.name, row.device, row.status, row.present, row.vm_id) == ("usb_1_8", 8, "allocated", True,
                                                                               vm.id)


def test_an_event_that_changes_nothing_writes_nothing(changed):
    assert changed("usb_1_6") == []
