"""The event-driven sync (host_devices.sync_named: the devices a journal event names, and what the host
reports for them) against the full one (host_devices.sync: the host's whole list): each outcome of a
plug or a pull, the same either way."""
from __future__ import annotations

from typing import Any

import pytest

from engine.dao import host_devices
from engine.dao.host_devices import InventoryChange


def _usb(name: str, port: str, serial: str | None = "K", **kw: Any) -> dict[str, Any]:
    return {"name": name, "capability": "usb_device", "vendorId": "0781", "productId": "5567",
            "portPath": port, "serial": serial, "allowed": True, **kw}


@pytest.fixture(params=["full", "event"])
def after(request):
    """Sync the host to `now` (its whole device list) after an event naming `names`: the full sync
    reads the whole list, the event-driven one what the host reports for those names alone."""
    def sync(s, host_id: str, now: list[dict[str, Any]], *names: str) -> InventoryChange:
        if request.param == "full":
            return host_devices.sync(s, host_id, now)
        return host_devices.sync_named(s, host_id, names, [d for d in now if d["name"] in names])
    return sync


def _changed(change: InventoryChange) -> dict[str, list[int]]:
    return {k: v for k, v in vars(change).items() if v}


def _row(s, dev_id: int) -> tuple[Any, ...]:
    row = host_devices.get(s, dev_id)
    return row.name, row.device, row.status, row.present, row.vm_id


STICK = _usb("usb_1_5", "1-2", bus=1, device=5)
OTHER = _usb("usb_1_6", "1-3", serial="K2", bus=1, device=6)


def _initial(sessions, host_id: str) -> tuple[int, int]:
    with sessions.begin() as s:
        stick, other = host_devices.sync(s, host_id, [STICK, OTHER]).added
    return stick, other


def test_a_new_device_is_added(sessions, make_host, after):
    host = make_host()
    stick, other = _initial(sessions, host.id)
    with sessions.begin() as s:
        change = after(s, host.id, [STICK, OTHER, _usb("usb_1_7", "1-4", serial="K3", bus=1, device=7)], "usb_1_7")
        (new,) = change.added
        assert _changed(change) == {"added": [new]}
        assert _row(s, new) == ("usb_1_7", 7, "available", True, None)
        assert new not in (stick, other)


def test_a_new_device_the_whitelist_refuses_is_unavailable(sessions, make_host, after):
    host = make_host()
    _initial(sessions, host.id)
    with sessions.begin() as s:
        (new,) = after(s, host.id, [STICK, OTHER, _usb("usb_1_7", "1-4", allowed=False)], "usb_1_7").added
        assert host_devices.get(s, new).status == "unavailable"


def test_a_replugged_device_is_the_same_device_with_its_new_numbers(sessions, make_host, after):
    host = make_host()
    stick, _ = _initial(sessions, host.id)
    with sessions.begin() as s:
        assert _changed(after(s, host.id, [OTHER], "usb_1_5")) == {"removed": [stick]}
    with sessions.begin() as s:
        change = after(s, host.id, [OTHER, {**STICK, "name": "usb_1_9", "device": 9}], "usb_1_9")
        assert _changed(change) == {"updated": [stick], "returned": [stick]}
        assert _row(s, stick) == ("usb_1_9", 9, "available", True, None)


def test_a_pull_and_replug_in_one_batch_is_an_update(sessions, make_host, after):
    """Both events name a device: the old name is not gone, its device answers under the new one."""
    host = make_host()
    stick, _ = _initial(sessions, host.id)
    with sessions.begin() as s:
        change = after(s, host.id, [OTHER, {**STICK, "name": "usb_1_9", "device": 9}], "usb_1_5", "usb_1_9")
        assert _changed(change) == {"updated": [stick]}
        assert _row(s, stick) == ("usb_1_9", 9, "available", True, None)


def test_another_device_on_a_known_port_is_a_new_device(sessions, make_host, after):
    host = make_host()
    stick, _ = _initial(sessions, host.id)
    with sessions.begin() as s:
        change = after(s, host.id, [OTHER, {**STICK, "serial": "ANOTHER"}], "usb_1_5")
        (new,) = change.added
        assert _changed(change) == {"added": [new], "removed": [stick]}
        assert new != stick and host_devices.get_by_name(s, host.id, "usb_1_5").id == new
        assert _row(s, stick)[2:4] == ("removed", False)


def test_a_free_device_pulled_is_removed(sessions, make_host, after):
    host = make_host()
    stick, other = _initial(sessions, host.id)
    with sessions.begin() as s:
        assert _changed(after(s, host.id, [OTHER], "usb_1_5")) == {"removed": [stick]}
        assert _row(s, stick) == ("usb_1_5", 5, "removed", False, None)
        assert _row(s, other) == ("usb_1_6", 6, "available", True, None)
    with sessions.begin() as s:
        assert not after(s, host.id, [OTHER], "usb_1_5")       # the same event again changes nothing


def test_a_held_device_pulled_is_lost_and_found_when_it_returns(sessions, make_host, make_vm, after):
    host, vm = make_host(), make_vm()
    stick, _ = _initial(sessions, host.id)
    with sessions.begin() as s:
        assert host_devices.claim(s, stick, vm.id) and host_devices.allocate(s, stick, vm.id)
    with sessions.begin() as s:
        assert _changed(after(s, host.id, [OTHER], "usb_1_5")) == {"lost": [stick]}
        assert _row(s, stick) == ("usb_1_5", 5, "allocated", False, vm.id)
    with sessions.begin() as s:
        change = after(s, host.id, [OTHER, {**STICK, "name": "usb_1_8", "device": 8}], "usb_1_8")
        assert _changed(change) == {"updated": [stick], "found": [stick]}
        assert _row(s, stick) == ("usb_1_8", 8, "allocated", True, vm.id)


def test_another_device_on_a_held_devices_port_is_not_found(sessions, make_host, make_vm, after):
    host, vm = make_host(), make_vm()
    stick, _ = _initial(sessions, host.id)
    with sessions.begin() as s:
        assert host_devices.claim(s, stick, vm.id)
    with sessions.begin() as s:
        after(s, host.id, [OTHER], "usb_1_5")
    with sessions.begin() as s:
        change = after(s, host.id, [OTHER, {**STICK, "name": "usb_1_8", "serial": "ANOTHER"}], "usb_1_8")
        assert _changed(change) == {"added": change.added} and change.added != [stick]
        assert _row(s, stick)[2:] == ("claimed", False, vm.id)


def test_an_event_for_a_device_the_host_no_longer_has_changes_nothing(sessions, make_host, after):
    host = make_host()
    _initial(sessions, host.id)
    with sessions.begin() as s:
        assert not after(s, host.id, [STICK, OTHER], "usb_3_3")


def test_the_one_device_sync_reads_only_that_device(sessions, make_host):
    """The other devices are not compared: a change the event does not name waits for the full sync."""
    host = make_host()
    stick, other = _initial(sessions, host.id)
    with sessions.begin() as s:
        assert _changed(host_devices.sync_named(s, host.id, ["usb_1_5"], [{**STICK, "bus": 2}])) == {
            "updated": [stick]}
        assert _row(s, other)[2:4] == ("available", True)
    with sessions.begin() as s:
        assert _changed(host_devices.sync(s, host.id, [{**STICK, "bus": 2}])) == {"removed": [other]}


def test_a_series_of_events_leaves_the_rows_a_full_sync_would(sessions, make_host, make_vm):
    full, event, vm = make_host(), make_host(), make_vm()
    key2 = _usb("usb_1_6", "1-3", serial="K2")
    steps: list[tuple[list[dict[str, Any]], tuple[str, ...]]] = [
        ([STICK], ("usb_1_5",)),
        ([STICK, key2], ("usb_1_6",)),
        ([key2], ("usb_1_5",)),
        ([key2, {**STICK, "name": "usb_1_7", "device": 7}], ("usb_1_7",)),
        ([{**STICK, "name": "usb_1_7", "device": 7}, {**key2, "serial": "K3"}], ("usb_1_6",)),
        ([], ("usb_1_6", "usb_1_7")),
        ([{**STICK, "name": "usb_2_2", "allowed": False}], ("usb_2_2",)),
    ]
    for i, (now, names) in enumerate(steps):
        with sessions.begin() as s:
            a = host_devices.sync(s, full.id, now)
            b = host_devices.sync_named(s, event.id, names, [d for d in now if d["name"] in names])
            assert {k: len(v) for k, v in vars(a).items()} == {k: len(v) for k, v in vars(b).items()}, i
            if i == 1:      # a VM holds the first key from here on, on both hosts
                for host_id in (full.id, event.id):
                    dev = host_devices.get_by_name(s, host_id, "usb_1_5")
                    assert host_devices.claim(s, dev.id, vm.id)

    def rows(host_id: str) -> list[tuple[Any, ...]]:
        with sessions() as s:
            return sorted((d.identity, d.name, d.device, d.status, d.present, d.vm_id)
                          for d in host_devices.list_for_host(s, host_id))
    assert rows(full.id) == rows(event.id)
    assert len(rows(full.id)) == 3
