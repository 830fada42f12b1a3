"""The engine driving USB host devices on the test host: the engine (REST app, commands, monitor, SQLite)
runs here with L1's agent as its host over mutual TLS. A key plugged into L1 reaches the engine's
inventory; it is attached to a running VM through the REST API, pulled and plugged back (re-attached
by the engine), detached, attached to a stopped VM that then starts, and a start with the key pulled
is refused (required) or goes on without it (optional).

The engine's VMs have no guest (the firmware idles): USB passthrough needs none, and they cost L1 little.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.testhost.conftest import CCID, journal_last, record, wait_event, wait_until
from tests.testhost.engine import Engine, fault, ok, running_engine

KEY, PORT, SERIAL = "ext-engine", 8, "PBENGINE1"
TIMEOUT = 25            # L1's udev and libvirt event, the agent's journal, one long-poll of the monitor


class UsbEngine(Engine):
    def key(self) -> dict[str, Any] | None:
        found = [d for d in self.devices("usb_device") if d.get("serial") == SERIAL]
        return found[0] if found else None

    def hostdev(self, vm: dict[str, Any], dev_id: str) -> dict[str, Any]:
        return ok(self.api.get(f"/api/vms/{vm['id']}/hostdevs/{dev_id}"))

    def attach(self, vm: dict[str, Any], hd_id: int, **kw: Any) -> dict[str, Any]:
        return ok(self.api.post(f"/api/vms/{vm['id']}/hostdevs", json={"host_device_id": hd_id, **kw}), 201)


@pytest.fixture(scope="module")
def engine(testhost, agent, tmp_path_factory) -> Iterator[UsbEngine]:
    with running_engine(testhost, agent, tmp_path_factory.mktemp("engine"), UsbEngine) as it:
        yield it
    record("engine-usb-timings.txt", "\n".join(it.timings) + "\n")
    print("\ntesthost, engine USB flows:\n  " + "\n  ".join(it.timings))


@pytest.fixture(scope="module")
def key(testhost, engine) -> Iterator[Callable[[bool], None]]:
    """Plugs (True) or pulls (False) the key on L1 from outside, as a person does; pulled at the end."""
    plugged = {"now": False}

    def put(plug: bool) -> None:
        if plug:
            testhost.plug_usb(KEY, "usb-ccid", port=PORT, serial=SERIAL)
        else:
            testhost.pull_usb(KEY)
        plugged["now"] = plug

    yield put
    if plugged["now"]:
        testhost.pull_usb(KEY)


@pytest.fixture(scope="module")
def state() -> dict[str, Any]:
    """What one test leaves to the next (the tests of this module run in order)."""
    return {}


def test_the_engine_discovers_a_key_plugged_into_the_host(engine, key, state):
    start = time.monotonic()
    key(True)
    found = wait_until(engine.key, TIMEOUT, "the key in the engine's inventory")
    engine.timed("plugged -> in the engine's inventory", start)
    assert (found["vendor_id"], found["product_id"]) == CCID
    assert (found["status"], found["vm_id"]) == ("available", None) and found["port_path"]
    state["hd"] = found["id"]


def test_attached_to_a_running_vm_pulled_plugged_back_and_detached(engine, key, state):
    vm = engine.new_vm("eng-live")
    ok(engine.api.post(f"/api/vms/{vm['id']}/start", json={}))
    start = time.monotonic()
    dev = engine.attach(vm, state["hd"])
    engine.timed("live attach through the REST API", start)
    alias = f"ua-{dev['id']}"
    assert dev["plugged"] and dev["present"] is True and dev["alias"] == alias
    before = engine.live(vm)[alias]
    assert engine.key()["status"] == "allocated"

    start = time.monotonic()
    key(False)
    wait_until(lambda: engine.hostdev(vm, dev["id"])["present"] is False, TIMEOUT, "the VM's device flagged missing")
    engine.timed("pulled -> the VM's device flagged missing", start)
    assert engine.hostdev(vm, dev["id"])["plugged"] and engine.events(vm, "HOST_DEVICE_LOST")
    assert alias in engine.live(vm)          # libvirt keeps the vanished device in the domain

    start = time.monotonic()
    key(True)
    wait_until(lambda: engine.events(vm, "HOSTDEV_REATTACHED"), TIMEOUT, "HOSTDEV_REATTACHED")
    engine.timed("plugged back -> re-attached to the VM", start)
    again = engine.hostdev(vm, dev["id"])
    assert (again["present"], again["plugged"], again["plug_state"]) == (True, True, "stable")
    now = engine.live(vm)[alias]
    assert (now["source"]["bus"], now["source"]["device"]) != (before["source"]["bus"], before["source"]["device"])
    assert (engine.key()["status"], engine.key()["vm_id"]) == ("allocated", vm["id"])

    start = time.monotonic()
    ok(engine.api.post(f"/api/vms/{vm['id']}/hostdevs/{dev['id']}/deactivate", json={}))
    assert engine.api.delete(f"/api/vms/{vm['id']}/hostdevs/{dev['id']}").status_code == 204
    engine.timed("live detach", start)
    assert alias not in engine.live(vm)
    assert engine.key()["status"] == "available"
    ok(engine.api.post(f"/api/vms/{vm['id']}/stop", json={}))


def test_attached_to_a_stopped_vm_then_started(engine, key, state):
    vm = engine.new_vm("eng-cold")
    dev = engine.attach(vm, state["hd"])
    assert engine.key()["status"] == "allocated" and engine.key()["vm_id"] == vm["id"]
    start = time.monotonic()
    ok(engine.api.post(f"/api/vms/{vm['id']}/start", json={}))
    engine.timed("start of a VM holding the key", start)
    assert f"ua-{dev['id']}" in engine.live(vm)
    ok(engine.api.post(f"/api/vms/{vm['id']}/stop", json={}))
    state["cold"], state["cold_dev"] = vm, dev


def test_an_optional_key_pulled_is_left_out_at_start_and_plugged_when_back(engine, key, state):
    vm, dev = state["cold"], state["cold_dev"]
    key(False)
    wait_until(lambda: engine.hostdev(vm, dev["id"])["present"] is False, TIMEOUT, "the key flagged missing")
    start = time.monotonic()
    assert ok(engine.api.post(f"/api/vms/{vm['id']}/start", json={}))["status"] == "up"
    engine.timed("start without the optional key", start)
    assert f"ua-{dev['id']}" not in engine.live(vm)
    (dropped,) = engine.events(vm, "HOSTDEV_DROPPED")
    assert dropped["severity"] == "warning" and dropped["device_id"] == dev["id"]
    start = time.monotonic()
    key(True)
    wait_until(lambda: engine.events(vm, "HOSTDEV_REATTACHED"), TIMEOUT, "the dropped key re-attached")
    engine.timed("plugged back -> the dropped key plugged into the running VM", start)
    assert f"ua-{dev['id']}" in engine.live(vm)
    ok(engine.api.post(f"/api/vms/{vm['id']}/stop", json={}))


def test_a_required_key_pulled_refuses_the_start(engine, agent, key, state):
    vm, dev = state["cold"], state["cold_dev"]
    assert engine.api.delete(f"/api/vms/{vm['id']}/hostdevs/{dev['id']}").status_code == 204
    required = engine.attach(vm, state["hd"], required=True)
    assert required["required"] is True

    # The engine not listening: only the host knows the key is gone, and its own code says so.
    engine.monitor.stop()
    after = journal_last(agent)
    key(False)
    wait_event(agent, after, lambda e: e["kind"] == "hostdev_removed", TIMEOUT, "hostdev_removed")
    start = time.monotonic()
    got = fault(engine.api.post(f"/api/vms/{vm['id']}/start", json={}))
    engine.timed("start refused by the host (required key gone, inventory stale)", start)
    assert [r["code"] for r in got["reasons"]] == ["HOST_DEVICE_REQUIRED_MISSING"]
    assert got["host"]["code"] == 317 and f"ua-{required['id']}" in got["host"]["message"]
    assert got["reasons"][0]["message"].startswith(f"Required host device {state['hd']} (08e6:4433")
    assert ok(engine.api.get(f"/api/vms/{vm['id']}"))["status"] == "down"

    # Listening again: the inventory knows, and canDo refuses before the host is called.
    engine.monitor.start()
    wait_until(lambda: engine.hostdev(vm, required["id"])["present"] is False, TIMEOUT, "the key flagged missing")
    got = fault(engine.api.post(f"/api/vms/{vm['id']}/start", json={}))
    assert [r["code"] for r in got["reasons"]] == ["HOST_DEVICE_REQUIRED_MISSING"] and "host" not in got
