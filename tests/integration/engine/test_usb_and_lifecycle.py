"""USB controllers and SPICE USB redirection over the engine's REST API on the real agent and libvirtd,
and a VM's lifecycle when things happen outside the engine (a domain destroyed behind its back, a stop
sent while the start is still running)."""
from __future__ import annotations

import socket
import threading
import uuid
from collections import Counter

import libvirt
import pytest

from engine.dao import hosts as hosts_dao
from tests.integration.engine.rest import defined_vms, fault, live_devices, new_vm, ok
from tests.integration.guest import guest_usb_controllers, wait_for_serial


def codes(f):
    return [r["code"] for r in f["reasons"]]


def destroyed_outside(api, engine_parts, host_id, libvirt_uri, vm_id):
    """`virsh destroy` behind the engine's back, then the monitor's polls until it has noticed."""
    conn = libvirt.open(libvirt_uri)
    try:
        conn.lookupByUUIDString(vm_id).destroy()
    finally:
        conn.close()
    with engine_parts["sessions"]() as s:
        row = hosts_dao.get(s, host_id)
    for _ in range(10):
        engine_parts["monitor"].run_once(row)
        if ok(api.get(f"/api/vms/{vm_id}"))["status"] == "down":
            return
    raise AssertionError(f"the monitor did not notice that VM {vm_id} stopped")


@pytest.fixture(scope="module")
def spice_vm(api, host):
    """A diskless SPICE VM (no guest OS: redirection devices and controllers need none)."""
    vm = new_vm(api, f"usb-{uuid.uuid4().hex[:6]}", graphics="spice")
    yield vm
    api.post(f"/api/vms/{vm['id']}/stop", json={})


def test_controllers_are_cold_plugged_and_sent_at_start(api, spice_vm, agent_proc):
    url = f"/api/vms/{spice_vm['id']}/controllers"
    first = ok(api.post(url, json={"type": "usb", "model": "ehci", "count": 2}), 201)
    assert (first["model"], first["index"]) == ("ehci", 0)
    listed = ok(api.get(url))
    assert sorted(c["index"] for c in listed) == [0, 1]
    f = fault(api.post(url, json={"model": "nec-xhci", "index": 1}), 409)
    assert codes(f) == ["CONTROLLER_INDEX_IN_USE"]
    xhci = ok(api.post(url, json={"model": "nec-xhci", "index": 6}), 201)
    ok(api.post(f"/api/vms/{spice_vm['id']}/start", json={}))
    live = {(d["model"], d.get("index")) for d in live_devices(agent_proc, spice_vm["id"])
            if d["type"] == "controller" and d["device"] == "usb"}
    assert {("ehci", 0), ("ehci", 1), ("nec-xhci", 6)} <= live
    # the running VM: the canDo refuses before any host call, and says to stop the VM first
    f = fault(api.post(url, json={"model": "qemu-xhci"}), 409)
    assert codes(f) == ["NOT_HOTPLUGGABLE"] and "stop the VM first" in f["reasons"][0]["message"]
    f = fault(api.delete(f"{url}/{xhci['id']}"), 409)
    assert codes(f) == ["NOT_HOTPLUGGABLE"]
    assert len([d for d in live_devices(agent_proc, spice_vm["id"]) if d["type"] == "controller"
                and d["device"] == "usb"]) == len(live)


def test_spice_redirection_plugs_and_unplugs_live(api, spice_vm, agent_proc):
    url = f"/api/vms/{spice_vm['id']}/redirdevs"
    redir = ok(api.post(url, json={"bus": "usb", "type": "spicevmc"}), 201)
    assert redir["plugged"] and redir["plug_state"] == "stable" and redir["address"]["type"] == "usb"
    assert redir["alias"] in {d["alias"] for d in live_devices(agent_proc, spice_vm["id"])}
    gone = ok(api.post(f"{url}/{redir['id']}/deactivate", json={}))
    assert (gone["plugged"], gone["plug_state"], gone["address"]) == (False, "stable", None)
    assert redir["alias"] not in {d["alias"] for d in live_devices(agent_proc, spice_vm["id"])}
    back = ok(api.post(f"{url}/{redir['id']}/activate", json={}))
    assert back["plugged"] and back["alias"] in {d["alias"] for d in live_devices(agent_proc, spice_vm["id"])}
    with socket.socket() as server:     # a usbredir server for QEMU to connect to
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        # nobody listens yet: the host refuses, the device is kept, deactivated, with the host's error
        f = fault(api.post(url, json={"type": "tcp", "host": "127.0.0.1", "port": port}), 502)
        assert f["host"]["code"] == 309 and "Connection refused" in f["host"]["message"]
        [tcp] = [r for r in ok(api.get(url)) if r["type"] == "tcp"]
        assert (tcp["plugged"], tcp["plug_state"], tcp["last_error"]["code"]) == (False, "stable", 309)
        server.listen(1)
        tcp = ok(api.post(f"{url}/{tcp['id']}/activate", json={}))
    assert tcp["plugged"] and tcp["alias"] in {d["alias"] for d in live_devices(agent_proc, spice_vm["id"])}
    fault(api.delete(f"{url}/{tcp['id']}"), 409)        # plugged on a running VM: deactivate first
    ok(api.post(f"{url}/{tcp['id']}/deactivate", json={}))
    assert api.delete(f"{url}/{tcp['id']}").status_code == 204


def test_spice_redirection_needs_spice_graphics(api, host):
    vm = new_vm(api, f"vnc-{uuid.uuid4().hex[:6]}", graphics="vnc")
    f = fault(api.post(f"/api/vms/{vm['id']}/redirdevs", json={"type": "spicevmc"}), 409)
    assert codes(f) == ["SPICE_REQUIRED"]
    assert ok(api.get(f"/api/vms/{vm['id']}/redirdevs")) == []


def test_the_agent_is_registered_once_whatever_name_reaches_it(api, host, agent_proc):
    """The real agent's identity (its state directory's host-id): its URL under another name is still
    the agent "lab" is."""
    f = fault(api.post("/api/hosts", json={"name": "lab-again", "url": agent_proc.url}), 409)
    assert codes(f) == ["AGENT_REGISTERED"]
    assert f["reasons"][0]["vars"]["host"] == "lab"
    assert f["reasons"][0]["vars"]["agent_id"] == (agent_proc.state_dir / "host-id").read_text().strip()
    assert [h["name"] for h in ok(api.get("/api/hosts"))] == ["lab"]


def test_vm_destroyed_outside_the_engine_starts_again_and_deletes_cleanly(api, host, engine_parts, libvirt_uri):
    vm = new_vm(api, f"outside-{uuid.uuid4().hex[:6]}")
    ok(api.post(f"/api/vms/{vm['id']}/start", json={}))
    destroyed_outside(api, engine_parts, host["id"], libvirt_uri, vm["id"])
    assert ok(api.post(f"/api/vms/{vm['id']}/start", json={}))["status"] == "up"
    ok(api.post(f"/api/vms/{vm['id']}/stop", json={}))
    assert api.delete(f"/api/vms/{vm['id']}").status_code == 204
    assert vm["id"] not in defined_vms(libvirt_uri)


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_stop_during_start_never_leaves_an_orphan(api, host, engine_parts, libvirt_uri, delay):
    vm = new_vm(api, f"race-{uuid.uuid4().hex[:6]}")
    answers = {}

    def start():
        answers["start"] = engine_parts["client_for"]().post(f"/api/vms/{vm['id']}/start", json={})

    thread = threading.Thread(target=start)
    thread.start()
    threading.Event().wait(delay)
    answers["stop"] = api.post(f"/api/vms/{vm['id']}/stop", json={})
    thread.join()
    assert answers["start"].status_code in (200, 409) and answers["stop"].status_code in (200, 409)
    assert 502 not in (answers["start"].status_code, answers["stop"].status_code)
    status = ok(api.get(f"/api/vms/{vm['id']}"))["status"]
    running = vm["id"] in defined_vms(libvirt_uri)
    assert (status, running) in {("up", True), ("down", False)}, (status, running, answers)
    if status == "up":
        ok(api.post(f"/api/vms/{vm['id']}/stop", json={}))
    assert api.delete(f"/api/vms/{vm['id']}").status_code == 204
    assert vm["id"] not in defined_vms(libvirt_uri)


def test_guest_sees_the_controllers_the_engine_added(api, host, guest, tmp_path):
    """An EHCI with its three UHCI companions (oVirt's layout, one request) and an xHCI, added while
    the VM is down: the booted guest finds all five on its PCI buses (the engine's controller at index
    0 replaces the machine's default UHCI)."""
    serial = tmp_path / "console.log"
    vm = new_vm(api, f"usbhc-{uuid.uuid4().hex[:6]}", guest, serial)
    url = f"/api/vms/{vm['id']}/controllers"
    ok(api.post(url, json={"type": "usb", "model": "ich9-ehci1", "companions": True}), 201)
    ok(api.post(url, json={"type": "usb", "model": "xhci"}), 201)
    rows = ok(api.get(url))
    assert sorted((c["model"], c["index"], c["master"]) for c in rows) == [
        ("ich9-ehci1", 0, None), ("ich9-uhci1", 0, 0), ("ich9-uhci2", 0, 2), ("ich9-uhci3", 0, 4),
        ("qemu-xhci", 1, None)]
    ok(api.post(f"/api/vms/{vm['id']}/start", json={}))
    try:
        wait_for_serial(serial, r"^PB-USBHC:", timeout=90)
        kinds = Counter(h["kind"] for h in guest_usb_controllers(serial).values())
        assert kinds == {"ehci": 1, "uhci": 3, "xhci": 1}, kinds
    finally:
        ok(api.post(f"/api/vms/{vm['id']}/stop", json={}))
