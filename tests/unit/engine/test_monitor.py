"""The monitor against the real dao (fixtures of conftest.py) and a scripted host of its own: a journal
of events it hands out after a sequence number, and the live devices of each VM."""
from __future__ import annotations

import copy
import threading
import time
from datetime import datetime, timedelta, timezone
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable
from unittest import mock

import pytest

from engine.dao import audit, devices as devices_dao
from engine.dao.models import Host, Vm, VmDevice
from engine.errors import HostCallFailed, HostUnreachable
from engine.monitor import Monitor, events as events_mod, runner

PCI = {"type": "pci", "domain": "0x0000", "bus": "0x00", "slot": "0x05", "function": "0x0"}
PCI2 = {"type": "pci", "domain": "0x0000", "bus": "0x00", "slot": "0x07", "function": "0x0"}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def ago(seconds: float) -> datetime:
    return utcnow() - timedelta(seconds=seconds)


class ScriptedHost:
    """A HostClient: a journal (`emit`) and live devices per VM (`domains`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.events: list[dict[str, Any]] = []
        self.seq = 0
        self.domains: dict[str, dict[str, Any]] = {}
        self.unreachable = False
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.on_call: Callable[[str, dict[str, Any]], None] | None = None
        self.hostdevs: list[dict[str, Any]] = []
        self.guest_keeps = False            # an unplug is answered pending (the guest holds the device)
        self.refuse: HostCallFailed | None = None   # the next plug or unplug is refused with this

    def emit(self, kind: str, vm_id: str | None = None, alias: str | None = None, *,
             at: float | None = None, **data: Any) -> int:
        self.seq += 1
        self.events.append({"seq": self.seq, "time": time.time() if at is None else at, "kind": kind,
                            "vmId": vm_id, "alias": alias, "data": data})
        return self.seq

    def sent(self, verb: str) -> list[dict[str, Any]]:
        return [params for v, params in self.calls if v == verb]

    def run(self, vm_id: str, *devices: dict[str, Any], status: str = "up") -> None:
        self.domains[vm_id] = {"status": status, "devices": list(devices)}

    def call(self, verb: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> dict[str, Any]:
        params = params or {}
        self.calls.append((verb, copy.deepcopy(params)))
        if self.on_call:
            self.on_call(verb, params)
        if self.unreachable:
            raise HostUnreachable(f"host {self.name} (http://test) is unreachable: connection refused",
                                  host=self.name)
        if verb == "Host.getEvents":
            found = [e for e in self.events if e["seq"] > params["after"]][:params.get("limit", 1000)]
            return {"events": copy.deepcopy(found), "last": self.seq}
        if verb == "VM.getDevices":
            dom = self.domains.get(params["vmId"])
            if dom is None:
                raise HostCallFailed("VM.getDevices failed", host=self.name, host_code=1,
                                     host_message="Virtual machine does not exist")
            return {"vmId": params["vmId"], "name": "vm", "status": dom["status"],
                    "devices": copy.deepcopy(dom["devices"])}
        if verb == "VM.list":
            return {"vms": [{"vmId": vm_id, "name": "vm", "status": dom["status"],
                             "devices": copy.deepcopy(dom["devices"])} for vm_id, dom in self.domains.items()]}
        if verb == "Host.hostdevListByCaps":
            return {"devices": [copy.deepcopy(d) for d in self.hostdevs if d["capability"] in params["caps"]
                                and ("names" not in params or d["name"] in params["names"])]}
        if verb == "VM.hotunplugHostdev":     # a device the domain lacks: deviceNotFound, as the agent says
            live = self.domains[params["vmId"]]["devices"]
            if not any(d.get("alias") == params["hostdev"]["alias"] for d in live):
                raise HostCallFailed("VM.hotunplugHostdev failed", host=self.name, host_code=304,
                                     host_message="Device not found on the VM")
            live[:] = [d for d in live if d.get("alias") != params["hostdev"]["alias"]]
            return {"status": "done"}
        if verb in ("VM.hotplugNic", "VM.hotunplugNic") and self.refuse is not None:
            refused, self.refuse = self.refuse, None
            raise refused
        if verb == "VM.hotplugNic":
            dev = {**params["nic"], "address": PCI2}
            self.domains[params["vmId"]]["devices"].append(dev)
            return dev
        if verb == "VM.hotunplugNic":
            live = self.domains[params["vmId"]]["devices"]
            if not any(d.get("alias") == params["nic"]["alias"] for d in live):
                raise HostCallFailed("VM.hotunplugNic failed", host=self.name, host_code=304,
                                     host_message="Device not found on the VM")
            if self.guest_keeps:
                return {"status": "pending"}
            live[:] = [d for d in live if d.get("alias") != params["nic"]["alias"]]
            return {"status": "done"}
        if verb == "VM.hotplugHostdev":
            dev = {**params["hostdev"], "address": {"type": "usb", "bus": "0", "port": "2"}}
            self.domains[params["vmId"]]["devices"].append(dev)
            return dev
        if verb == "VM.destroy":
            if self.domains.pop(params["vmId"], None) is None:
                raise HostCallFailed("VM.destroy failed", host=self.name, host_code=1,
                                     host_message="Virtual machine does not exist")
            return {"vmId": params["vmId"], "status": "down"}
        raise AssertionError(f"unexpected verb {verb}")


class ScriptedHosts:
    def __init__(self) -> None:
        self.by_name: dict[str, ScriptedHost] = {}

    def __call__(self, host: Host) -> ScriptedHost:
        return self.by_name.setdefault(host.name, ScriptedHost(host.name))


def nic_dev(alias: str, address: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "interface", "device": "bridge", "alias": alias, "address": address or PCI,
            "macAddr": "02:00:00:00:00:01", "network": "ovirtmgmt", "nicModel": "virtio"}


@pytest.fixture
def fakes() -> ScriptedHosts:
    return ScriptedHosts()


@pytest.fixture
def monitor(sessions, fakes) -> Monitor:
    return Monitor(sessions, fakes, poll_timeout=0.1, in_flight_grace=30, stale_after=120, retry_delay=0.05)


@pytest.fixture
def host(make_host) -> Host:
    return make_host("h1")


@pytest.fixture
def agent(fakes, host) -> ScriptedHost:
    return fakes(host)


@pytest.fixture
def vm(make_vm, host) -> Vm:
    return make_vm("vm1", host=host, status="up")


@pytest.fixture
def read(sessions):
    def read(model, key):
        with sessions.begin() as s:
            return s.get(model, key)
    return read


@pytest.fixture
def audits(sessions):
    def audits(code: str | None = None) -> list:
        with sessions.begin() as s:
            return list(audit.list(s, code=code, limit=1000))
    return audits


def unplugging_nic(make_nic, vm, started: float = 1, **kw):
    kw.setdefault("address", PCI)
    return make_nic(vm, is_plugged=True, plug_state="unplugging", plug_started_at=ago(started), **kw)


def pending_nic(make_nic, vm, started: float = 1, **kw):
    """An unplug the host took and left pending in the guest (the command answered 202)."""
    return unplugging_nic(make_nic, vm, started, plug_acked_at=ago(started), **kw)


def unanswered_nic(make_nic, vm, *, plug: bool, started: float = 1, **kw):
    """A transition whose host call got no answer (the command is over)."""
    error = {"code": None, "message": "Host h1 could not be reached: connection reset", "host": "h1",
             "unanswered": True}
    if plug:
        return make_nic(vm, is_plugged=True, plug_state="plugging", plug_started_at=ago(started), last_error=error,
                        **kw)
    return unplugging_nic(make_nic, vm, started, last_error=error, **kw)


# ---- events ---------------------------------------------------------------------------------------

def test_device_removed_finishes_the_unplug(monitor, agent, host, vm, make_nic, read, audits):
    nic = unplugging_nic(make_nic, vm)
    agent.emit("device_removed", vm.id, nic.device.alias, elapsed=0.2)
    assert monitor.run_once(host) == 1
    dev = read(VmDevice, nic.id)
    assert (dev.is_plugged, dev.plug_state, dev.address, dev.plug_started_at) == (False, "stable", None, None)
    [event] = audits("NIC_UNPLUGGED")
    assert (event.vm_id, event.device_id, event.host_id) == (vm.id, nic.id, host.id)
    assert nic.name in event.message
    assert read(Host, host.id).last_event_seq == 1
    assert agent.calls[-1] == ("Host.getEvents", {"after": 0, "timeout": 0.1, "limit": 500})


def test_device_removal_failed_puts_it_back(monitor, agent, host, vm, make_nic, read, audits):
    nic = unplugging_nic(make_nic, vm)
    agent.emit("device_removal_failed", vm.id, nic.device.alias)
    assert monitor.run_once(host) == 1
    dev = read(VmDevice, nic.id)
    assert (dev.is_plugged, dev.plug_state, dev.address) == (True, "stable", PCI)
    assert dev.last_error["event"] == "device_removal_failed"
    [event] = audits("NIC_UNPLUG_FAILED")
    assert event.severity == "error" and event.device_id == nic.id


def test_device_event_on_a_stable_row_changes_nothing(monitor, agent, host, vm, make_nic, read, audits):
    nic = make_nic(vm, is_plugged=True, address=PCI)
    agent.emit("device_removed", vm.id, nic.device.alias)
    assert monitor.run_once(host) == 1
    dev = read(VmDevice, nic.id)
    assert (dev.is_plugged, dev.address) == (True, PCI)
    assert audits("NIC_UNPLUGGED") == []
    assert read(Host, host.id).last_event_seq == 1


def test_device_event_older_than_the_transition_is_ignored(monitor, agent, host, vm, make_nic, read):
    nic = unplugging_nic(make_nic, vm, started=5)
    agent.emit("device_removed", vm.id, nic.device.alias, at=time.time() - 60)
    monitor.run_once(host)
    assert read(VmDevice, nic.id).plug_state == "unplugging"


def test_device_event_of_a_vm_on_another_host_is_ignored(monitor, agent, host, make_host, make_vm, make_nic, read):
    elsewhere = make_vm("vm2", host=make_host("h2"), status="up")
    nic = unplugging_nic(make_nic, elsewhere)
    agent.emit("device_removed", elsewhere.id, nic.device.alias)
    agent.emit("device_removed", "00000000-0000-0000-0000-000000000000", "ua-x")
    assert monitor.run_once(host) == 2
    assert read(VmDevice, nic.id).plug_state == "unplugging"
    assert read(Host, host.id).last_event_seq == 2


@pytest.mark.parametrize("what", ["stopped", "crashed", "shutdown"])
def test_vm_lifecycle_down(monitor, agent, host, vm, make_nic, read, audits, what):
    pending = unplugging_nic(make_nic, vm)
    plugged = make_nic(vm, is_plugged=True, address=PCI2)
    agent.emit("vm_lifecycle", vm.id, event=what)
    assert monitor.run_once(host) == 1
    row = read(Vm, vm.id)
    assert (row.status, row.run_on_host) == ("down", None)
    [event] = audits("VM_STOPPED")
    assert event.vars["event"] == what and event.vm_id == vm.id
    dev = read(VmDevice, pending.id)
    assert (dev.is_plugged, dev.plug_state, dev.address) == (False, "stable", None)
    kept = read(VmDevice, plugged.id)
    assert (kept.is_plugged, kept.address) == (True, PCI2)   # addresses kept for the next run


def test_vm_lifecycle_pause_resume_and_others(monitor, agent, host, vm, read):
    agent.emit("vm_lifecycle", vm.id, event="suspended")
    monitor.run_once(host)
    assert read(Vm, vm.id).status == "paused"
    agent.emit("vm_lifecycle", vm.id, event="resumed")
    agent.emit("vm_lifecycle", vm.id, event="started")
    agent.emit("hostdev_added", None, None, name="usb_1_2")
    assert monitor.run_once(host) == 3
    assert read(Vm, vm.id).status == "up"
    assert read(Host, host.id).last_event_seq == 4


def usb_key(name: str, port: str = "1-2", serial: str = "K1") -> dict[str, Any]:
    return {"name": name, "capability": "usb_device", "vendorId": "0781", "productId": "5567",
            "portPath": port, "serial": serial, "allowed": True}


def test_a_device_plugged_or_pulled_on_the_host_reaches_the_inventory(monitor, agent, host, read, sessions,
                                                                       audits):
    from engine.dao import host_devices
    agent.hostdevs.append(usb_key("usb_1_5"))
    agent.emit("hostdev_added", None, None, name="usb_1_5")
    monitor.run_once(host)
    assert [v for v, p in agent.calls if v == "Host.hostdevListByCaps"] == ["Host.hostdevListByCaps"]
    assert agent.calls[-1][1] == {"caps": ["usb_device"], "names": ["usb_1_5"]}     # that device alone
    with sessions() as s:
        (dev,) = host_devices.list_for_host(s, host.id)
        assert (dev.name, dev.status) == ("usb_1_5", "available")
    agent.hostdevs.clear()
    agent.emit("hostdev_removed", None, None, name="usb_1_5")
    agent.emit("hostdev_removed", None, None, name="usb_1_6")     # one read for a batch of events
    monitor.run_once(host)
    assert [p for v, p in agent.calls if v == "Host.hostdevListByCaps"][1:] == [
        {"caps": ["usb_device"], "names": ["usb_1_5", "usb_1_6"]}]
    assert read(type(dev), dev.id).status == "removed"
    assert [e.code for e in audits()].count("HOST_DEVICES_SYNCED") == 2


def test_a_held_device_that_leaves_the_host_is_told_to_its_vm(monitor, agent, host, vm, sessions, audits):
    from engine.dao import host_devices
    agent.hostdevs.append(usb_key("usb_1_5"))
    monitor.refresh_inventory(host)
    with sessions.begin() as s:
        (dev,) = host_devices.list_for_host(s, host.id)
        assert host_devices.claim(s, dev.id, vm.id) and host_devices.allocate(s, dev.id, vm.id)
    agent.hostdevs.clear()
    agent.emit("hostdev_removed", None, None, name="usb_1_5")
    monitor.run_once(host)
    lost = [e for e in audits() if e.code == "HOST_DEVICE_LOST"]
    assert len(lost) == 1 and lost[0].vm_id == vm.id and lost[0].severity == "warning"
    agent.hostdevs.append(usb_key("usb_1_9"))
    agent.emit("hostdev_added", None, None, name="usb_1_9")
    monitor.run_once(host)
    assert [e.vm_id for e in audits() if e.code == "HOST_DEVICE_FOUND"] == [vm.id]


def test_a_device_event_reads_only_that_device_and_leaves_the_others(monitor, agent, host, sessions):
    from engine.dao import host_devices
    agent.hostdevs[:] = [usb_key("usb_1_5"), usb_key("usb_1_6", port="1-3", serial="K2")]
    monitor.refresh_inventory(host)
    agent.hostdevs[:] = [usb_key("usb_1_7", port="1-4", serial="K3")]     # usb_1_6 pulled unannounced
    agent.emit("hostdev_added", None, None, name="usb_1_7")
    agent.emit("hostdev_removed", None, None, name="usb_1_5")
    monitor.run_once(host)
    with sessions() as s:
        assert {d.name: d.status for d in host_devices.list_for_host(s, host.id)} == {
            "usb_1_5": "removed", "usb_1_6": "available", "usb_1_7": "available"}
    monitor.reconcile_host(host)                        # the full read is the safety net
    with sessions() as s:
        assert host_devices.get_by_name(s, host.id, "usb_1_6").status == "removed"


def test_a_device_event_without_a_name_reads_the_whole_inventory(monitor, agent, host):
    agent.emit("hostdev_added", None, None)
    monitor.run_once(host)
    assert [p for v, p in agent.calls if v == "Host.hostdevListByCaps"] == [{"caps": ["pci", "usb_device"]}]


def test_a_host_that_cannot_list_by_name_is_read_whole(monitor, agent, host, sessions):
    from engine.dao import host_devices
    agent.hostdevs[:] = [usb_key("usb_1_5")]
    agent.emit("hostdev_added", None, None, name="usb_1_5")

    def refuse_names(verb, params):
        if verb == "Host.hostdevListByCaps" and "names" in params:
            raise HostCallFailed("Host.hostdevListByCaps failed", host=agent.name, host_code=-32602,
                                 host_message="Invalid params: (params): additional properties")
    agent.on_call = refuse_names
    monitor.run_once(host)
    assert [p for v, p in agent.calls if v == "Host.hostdevListByCaps"] == [
        {"caps": ["usb_device"], "names": ["usb_1_5"]}, {"caps": ["usb_device"]}]
    with sessions() as s:
        assert [d.name for d in host_devices.list_for_host(s, host.id)] == ["usb_1_5"]


def test_an_unreachable_host_does_not_stop_the_event_batch(monitor, agent, host, read):
    agent.emit("hostdev_added", None, None, name="usb_1_5")

    def fail_inventory(verb, params):
        if verb == "Host.hostdevListByCaps":
            agent.unreachable = True
    agent.on_call = fail_inventory
    assert monitor.run_once(host) == 1
    assert read(Host, host.id).last_event_seq == 1


def test_events_apply_in_sequence_order(monitor, agent, host, vm, make_nic, read):
    nic = unplugging_nic(make_nic, vm)
    agent.emit("device_removal_failed", vm.id, nic.device.alias)
    agent.emit("device_removed", vm.id, nic.device.alias)
    agent.events.reverse()
    monitor.run_once(host)
    # removal_failed (seq 1) finished the transition; the removal (seq 2) found a stable row
    assert read(VmDevice, nic.id).is_plugged is True


def test_last_event_seq_survives_a_restart(sessions, fakes, agent, host, vm, make_nic, read, audits):
    nic = unplugging_nic(make_nic, vm)
    agent.emit("device_removed", vm.id, nic.device.alias)
    Monitor(sessions, fakes, poll_timeout=0.1).run_once(host)
    agent.emit("vm_lifecycle", vm.id, event="stopped")
    # a new engine process: it asks for what follows the stored mark, and nothing is applied twice
    again = Monitor(sessions, fakes, poll_timeout=0.1)
    assert again.run_once(read(Host, host.id)) == 1
    assert [p for v, p in agent.calls if v == "Host.getEvents"][-1]["after"] == 1
    assert len(audits("NIC_UNPLUGGED")) == 1
    assert read(Host, host.id).last_event_seq == 2
    assert again.run_once(host) == 0


def test_two_monitors_that_read_the_same_events_apply_them_once(sessions, fakes, agent, host, vm, make_nic,
                                                                 read, audits):
    """Two engines (replicas, or an old leader that has not noticed it lost) long-poll the same host: both
    get the same events, only one applies them."""
    nic = unplugging_nic(make_nic, vm)
    agent.emit("device_removed", vm.id, nic.device.alias)
    both_read = threading.Barrier(2, timeout=10)
    agent.on_call = lambda verb, _params: both_read.wait() if verb == "Host.getEvents" else None
    monitors = [Monitor(sessions, fakes, poll_timeout=0.1) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        counts = sorted(pool.map(lambda m: m.run_once(read(Host, host.id)), monitors))
    assert counts == [0, 1]
    assert len(audits("NIC_UNPLUGGED")) == 1
    assert read(Host, host.id).last_event_seq == 1


def test_reapplying_events_is_idempotent(sessions, monitor, agent, host, vm, make_nic, read, audits):
    gone = unplugging_nic(make_nic, vm)
    back = unplugging_nic(make_nic, vm)
    agent.emit("device_removed", vm.id, gone.device.alias)
    agent.emit("device_removal_failed", vm.id, back.device.alias)
    monitor.run_once(host)
    first = [(a.code, a.device_id) for a in audits()]
    with sessions.begin() as s:          # as if the mark had been lost
        s.get(Host, host.id).last_event_seq = 0
    assert monitor.run_once(host) == 2
    assert [(a.code, a.device_id) for a in audits()] == first
    assert read(VmDevice, gone.id).is_plugged is False
    assert read(VmDevice, back.id).is_plugged is True


def test_changes_and_mark_commit_together(monitor, agent, host, vm, make_nic, read, audits, monkeypatch):
    first = unplugging_nic(make_nic, vm)
    second = unplugging_nic(make_nic, vm)
    agent.emit("device_removed", vm.id, first.device.alias)
    agent.emit("device_removed", vm.id, second.device.alias)
    real = devices_dao.finish_transition
    calls = []

    def failing(s, dev_id, **kw):
        calls.append(dev_id)
        if len(calls) == 2:
            raise RuntimeError("database went away")
        return real(s, dev_id, **kw)

    monkeypatch.setattr(devices_dao, "finish_transition", failing)
    with pytest.raises(RuntimeError):
        monitor.run_once(host)
    assert read(VmDevice, first.id).plug_state == "unplugging"     # rolled back with the rest
    assert read(Host, host.id).last_event_seq == 0
    assert audits("NIC_UNPLUGGED") == []
    monkeypatch.setattr(devices_dao, "finish_transition", real)
    assert monitor.run_once(host) == 2
    assert read(VmDevice, first.id).plug_state == read(VmDevice, second.id).plug_state == "stable"
    assert read(Host, host.id).last_event_seq == 2


def test_malformed_event_is_skipped(monitor, agent, host, vm, make_nic, read):
    nic = unplugging_nic(make_nic, vm)
    agent.emit("device_removed", vm.id, None)
    agent.events[-1].pop("alias")
    agent.emit("device_removed", vm.id, nic.device.alias)
    assert monitor.run_once(host) == 2
    assert read(VmDevice, nic.id).is_plugged is False


def test_journal_restart_rereads_from_the_start(sessions, monitor, agent, host, vm, read):
    with sessions.begin() as s:
        s.get(Host, host.id).last_event_seq = 40
    agent.run(vm.id)
    agent.emit("vm_lifecycle", vm.id, event="suspended")
    assert monitor.run_once(host) == 0
    assert read(Host, host.id).last_event_seq == 0
    assert monitor.run_once(host) == 1
    assert read(Vm, vm.id).status == "paused"


def test_unreachable_host_is_marked_once_and_comes_back(monitor, agent, host, read, audits):
    agent.unreachable = True
    assert monitor.run_once(host) == 0
    assert monitor.run_once(read(Host, host.id)) == 0
    assert read(Host, host.id).status == "unreachable"
    [event] = audits("HOST_UNREACHABLE")
    assert event.host_id == host.id and "unreachable" in event.message
    agent.unreachable = False
    monitor.run_once(read(Host, host.id))
    assert read(Host, host.id).status == "up"
    agent.unreachable = True
    monitor.run_once(read(Host, host.id))
    assert len(audits("HOST_UNREACHABLE")) == 2      # a second outage is a second event


def test_host_in_maintenance_stays_there(monitor, agent, make_host, fakes, read):
    h = make_host("h9", status="maintenance")
    fakes(h).unreachable = True
    monitor.run_once(h)
    assert read(Host, h.id).status == "maintenance"


# ---- reconciliation -------------------------------------------------------------------------------

def test_unplugging_and_gone_becomes_unplugged(monitor, agent, vm, make_nic, read, audits):
    nic = unplugging_nic(make_nic, vm, started=600)
    agent.run(vm.id)
    assert monitor.reconcile_vm(vm) == 1
    dev = read(VmDevice, nic.id)
    assert (dev.is_plugged, dev.plug_state, dev.address) == (False, "stable", None)
    assert [a.device_id for a in audits("NIC_UNPLUGGED")] == [nic.id]


def test_young_in_flight_rows_are_left_to_their_command_unless_the_host_settles_them(monitor, agent, vm, make_nic,
                                                                                      read, audits):
    unplugging = unplugging_nic(make_nic, vm, started=1)
    plugging = make_nic(vm, is_plugged=True, plug_state="plugging", plug_started_at=ago(1))
    done_unplug = unplugging_nic(make_nic, vm, started=1)
    done_plug = make_nic(vm, is_plugged=True, plug_state="plugging", plug_started_at=ago(1))
    agent.run(vm.id, nic_dev(unplugging.device.alias), nic_dev(done_plug.device.alias, PCI2))
    # the host's truth settles what is settled, whatever the command is still doing...
    assert monitor.reconcile_vm(vm) == 2
    assert read(VmDevice, done_unplug.id).is_plugged is False
    assert (read(VmDevice, done_plug.id).plug_state, read(VmDevice, done_plug.id).address) == ("stable", PCI2)
    # ...and what the host has not done yet is the command's
    assert read(VmDevice, unplugging.id).plug_state == "unplugging"
    assert read(VmDevice, plugging.id).plug_state == "plugging"
    assert [v for v, _ in agent.calls if v.startswith("VM.hot")] == []
    # at engine start no command can be running: each is sent to the host again and finished
    assert monitor.reconcile_vm(vm, startup=True) == 2
    assert [v for v, _ in agent.calls if v.startswith("VM.hot")] == ["VM.hotunplugNic", "VM.hotplugNic"]
    assert (read(VmDevice, unplugging.id).is_plugged, read(VmDevice, unplugging.id).plug_state) == (False, "stable")
    assert (read(VmDevice, plugging.id).is_plugged, read(VmDevice, plugging.id).plug_state) == (True, "stable")
    assert {a.device_id for a in audits("NIC_UNPLUG_RETRIED")} == {unplugging.id}
    assert {a.device_id for a in audits("NIC_PLUG_RETRIED")} == {plugging.id}


def test_unplugging_still_present(monitor, agent, vm, make_nic, read, audits):
    fresh = pending_nic(make_nic, vm, started=60)
    stale = pending_nic(make_nic, vm, started=600, address=None)
    agent.run(vm.id, nic_dev(fresh.device.alias), nic_dev(stale.device.alias, PCI2))
    assert monitor.reconcile_vm(vm) == 1
    assert read(VmDevice, fresh.id).plug_state == "unplugging"      # the guest may still release it
    dev = read(VmDevice, stale.id)
    assert (dev.is_plugged, dev.plug_state, dev.address) == (True, "stable", PCI2)
    assert "did not release" in dev.last_error["message"]
    [event] = audits("NIC_UNPLUG_FAILED")
    assert event.device_id == stale.id


def test_plugging_and_present_becomes_plugged(monitor, agent, vm, make_nic, read, audits):
    nic = make_nic(vm, is_plugged=False, plug_state="plugging", plug_started_at=ago(600))
    agent.run(vm.id, nic_dev(nic.device.alias, PCI2))
    assert monitor.reconcile_vm(vm) == 1
    dev = read(VmDevice, nic.id)
    assert (dev.is_plugged, dev.plug_state, dev.address) == (True, "stable", PCI2)
    assert [a.device_id for a in audits("NIC_PLUGGED")] == [nic.id]


def test_plugging_and_gone_past_its_deadline_is_plugged_again(monitor, agent, vm, make_nic, read, audits):
    """Its command died between the host call and the commit: what the user asked is sent again."""
    nic = make_nic(vm, is_plugged=True, plug_state="plugging", plug_started_at=ago(600))
    agent.run(vm.id)
    assert monitor.reconcile_vm(vm) == 1
    dev = read(VmDevice, nic.id)
    assert (dev.is_plugged, dev.plug_state, dev.address) == (True, "stable", PCI2)
    assert [a.device_id for a in audits("NIC_PLUG_RETRIED")] == [nic.id]
    assert [a.device_id for a in audits("NIC_PLUGGED")] == [nic.id]


def test_a_plug_sent_again_and_refused_is_recorded_as_failed(monitor, agent, vm, make_nic, read, audits):
    nic = make_nic(vm, is_plugged=True, plug_state="plugging", plug_started_at=ago(600))
    agent.run(vm.id)
    agent.refuse = HostCallFailed("VM.hotplugNic failed", host="h1", host_code=49, host_message="no free slot")
    monitor.reconcile_vm(vm)
    dev = read(VmDevice, nic.id)
    assert (dev.is_plugged, dev.plug_state, dev.last_error["code"]) == (False, "stable", 49)
    assert [a.device_id for a in audits("NIC_PLUG_FAILED")] == [nic.id]


def test_an_unanswered_unplug_whose_detach_never_came_is_sent_again_at_once(monitor, agent, vm, make_nic, read,
                                                                            audits):
    """The agent died before it detached: the device is still there, and the user's deactivate is not
    dropped (nor, minutes later, blamed on the guest)."""
    nic = unanswered_nic(make_nic, vm, plug=False, started=2)
    agent.run(vm.id, nic_dev(nic.device.alias))
    assert monitor.reconcile_vm(vm) == 1
    assert agent.calls[-1][0] == "VM.hotunplugNic"
    dev = read(VmDevice, nic.id)
    assert (dev.is_plugged, dev.plug_state, dev.last_error) == (False, "stable", None)
    assert [a.code for a in audits() if a.device_id == nic.id] == ["NIC_UNPLUG_RETRIED", "NIC_UNPLUGGED"]
    assert not audits("NIC_UNPLUG_FAILED")


def test_an_unplug_sent_again_that_the_guest_holds_waits_for_the_guest_then_gives_up(sessions, fakes, agent, vm,
                                                                                     make_nic, read, audits):
    nic = unanswered_nic(make_nic, vm, plug=False, started=2)
    agent.run(vm.id, nic_dev(nic.device.alias))
    agent.guest_keeps = True
    now = [utcnow()]
    monitor = Monitor(sessions, fakes, poll_timeout=0.1, in_flight_grace=30, stale_after=120, clock=lambda: now[0])
    monitor.reconcile_vm(vm)
    dev = read(VmDevice, nic.id)
    assert (dev.plug_state, dev.plug_acked_at is not None, dev.last_error) == ("unplugging", True, None)
    sent = len(agent.sent("VM.hotunplugNic"))
    now[0] += timedelta(seconds=60)         # past the grace: acknowledged, so not sent a third time
    assert monitor.reconcile_vm(vm) == 0
    assert len(agent.sent("VM.hotunplugNic")) == sent == 1
    now[0] += timedelta(seconds=120)        # past stale_after: the guest never released it
    assert monitor.reconcile_vm(vm) == 1
    dev = read(VmDevice, nic.id)
    assert (dev.is_plugged, dev.plug_state) == (True, "stable")
    assert "did not release" in dev.last_error["message"]
    assert [a.code for a in audits() if a.device_id == nic.id] == ["NIC_UNPLUG_RETRIED", "NIC_UNPLUG_PENDING",
                                                                   "NIC_UNPLUG_FAILED"]


def test_an_unanswered_plug_the_host_did_is_plugged(monitor, agent, vm, make_nic, read, audits):
    nic = unanswered_nic(make_nic, vm, plug=True, started=2)
    agent.run(vm.id, nic_dev(nic.device.alias, PCI2))
    assert monitor.reconcile_vm(vm) == 1
    dev = read(VmDevice, nic.id)
    assert (dev.is_plugged, dev.plug_state, dev.address, dev.last_error) == (True, "stable", PCI2, None)
    assert not agent.sent("VM.hotplugNic")


def test_an_unplug_sent_again_to_a_host_that_still_does_not_answer_stays_in_flight(monitor, agent, vm, make_nic,
                                                                                  read, audits):
    nic = unanswered_nic(make_nic, vm, plug=False, started=2)
    agent.run(vm.id, nic_dev(nic.device.alias))
    original = agent.call

    def drops_unplugs(verb, params=None, *, timeout=None):
        if verb == "VM.hotunplugNic":
            raise HostUnreachable("host h1 (http://test) is unreachable: connection refused", host="h1")
        return original(verb, params, timeout=timeout)
    agent.call = drops_unplugs
    monitor.reconcile_vm(vm)
    dev = read(VmDevice, nic.id)
    # never rolled back to plugged: the user's deactivate stays asked for
    assert (dev.is_plugged, dev.plug_state) == (True, "unplugging")
    assert dev.last_error["unanswered"] is True


def test_a_host_that_answers_again_is_reconciled_at_once(monitor, agent, host, vm, make_nic, read, audits):
    nic = unanswered_nic(make_nic, vm, plug=False, started=2)
    agent.run(vm.id, nic_dev(nic.device.alias))
    agent.unreachable = True
    monitor.run_once(host)
    assert read(Host, host.id).status == "unreachable"
    agent.unreachable = False
    monitor.run_once(read(Host, host.id))
    assert read(Host, host.id).status == "up"
    assert read(VmDevice, nic.id).is_plugged is False
    assert [a.code for a in audits() if a.device_id == nic.id] == ["NIC_UNPLUG_RETRIED", "NIC_UNPLUGGED"]


def test_stable_rows_follow_the_host(monitor, agent, vm, make_nic, read, audits):
    lost = make_nic(vm, is_plugged=True, address=PCI)
    found = make_nic(vm, is_plugged=False)
    moved = make_nic(vm, is_plugged=True, address=PCI)
    fine = make_nic(vm, is_plugged=True, address=PCI2)
    off = make_nic(vm, is_plugged=False)
    agent.run(vm.id, nic_dev(found.device.alias, {**PCI, "slot": "0x09"}),
              nic_dev(moved.device.alias, {**PCI, "slot": "0x0a"}), nic_dev(fine.device.alias, PCI2),
              {"type": "controller", "device": "usb", "alias": "usb", "address": None})
    assert monitor.reconcile_vm(vm) == 3
    assert (read(VmDevice, lost.id).is_plugged, read(VmDevice, lost.id).address) == (False, None)
    assert (read(VmDevice, found.id).is_plugged, read(VmDevice, found.id).address["slot"]) == (True, "0x09")
    assert read(VmDevice, moved.id).address["slot"] == "0x0a"
    assert read(VmDevice, fine.id).address == PCI2
    assert read(VmDevice, off.id).is_plugged is False
    repaired = audits("NIC_STATE_REPAIRED")
    assert sorted((a.device_id, a.vars["plugged"]) for a in repaired) == sorted([(lost.id, False), (found.id, True)])
    assert monitor.reconcile_vm(vm) == 0                 # nothing left to repair


def test_row_changed_while_asking_is_left_alone(sessions, monitor, agent, vm, make_nic, read):
    nic = make_nic(vm, is_plugged=False)
    agent.run(vm.id)

    def plug_meanwhile(verb, params):
        with sessions.begin() as s:
            s.get(VmDevice, nic.id).is_plugged = True

    agent.on_call = plug_meanwhile
    assert monitor.reconcile_vm(vm) == 0
    assert read(VmDevice, nic.id).is_plugged is True


def test_vm_unknown_to_the_host_goes_down(monitor, agent, vm, make_nic, read, audits):
    nic = unplugging_nic(make_nic, vm, started=1)
    assert monitor.reconcile_vm(vm) == 1
    row = read(Vm, vm.id)
    assert (row.status, row.run_on_host) == ("down", None)
    [event] = audits("VM_STOPPED")
    assert "does not know it" in event.message
    assert read(VmDevice, nic.id).plug_state == "stable"


def test_vm_down_on_the_host_goes_down(monitor, agent, vm, read):
    agent.run(vm.id, status="down")
    assert monitor.reconcile_vm(vm) == 1
    assert read(Vm, vm.id).status == "down"


def test_reconcile_unreachable_host(monitor, agent, host, vm, make_nic, read, audits):
    nic = make_nic(vm, is_plugged=True, address=PCI)
    agent.unreachable = True
    assert monitor.reconcile_vm(vm) == 0
    assert read(Host, host.id).status == "unreachable"
    assert read(VmDevice, nic.id).is_plugged is True
    assert read(Vm, vm.id).status == "up"
    assert len(audits("HOST_UNREACHABLE")) == 1


def test_reconcile_host_asks_only_for_its_running_vms(monitor, agent, host, vm, make_vm, make_host, fakes, make_nic,
                                                       read):
    stopped = make_vm("vm-down", host=host, status="down")
    other = make_vm("vm-other", host=make_host("h2"), status="up")
    lost = make_nic(vm, is_plugged=True, address=PCI)
    agent.run(vm.id)
    assert monitor.reconcile_host(host) == 1
    assert [verb for verb, _ in agent.calls if verb.startswith("VM.")] == ["VM.list"]
    assert read(VmDevice, lost.id).is_plugged is False
    assert read(Vm, stopped.id).status == "down" and read(Vm, other.id).status == "up"
    assert fakes.by_name.get("h2") is None or fakes.by_name["h2"].calls == []


def _statements_of_one_poll(monitor, host, engine_) -> list[str]:
    from sqlalchemy import event

    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(" ".join(statement.split()))
    event.listen(engine_, "before_cursor_execute", record)
    try:
        assert monitor.run_once(host) == 1
    finally:
        event.remove(engine_, "before_cursor_execute", record)
    return seen


def test_a_device_event_reads_its_vm_and_device_in_one_statement(monitor, agent, host, vm, make_nic, read,
                                                                  engine_):
    """What a device_removed poll reads: the host's row, which of the batch's devices are being
    unplugged, then, applying it, its VM and device in one SELECT (two before: the VM, then the device
    by alias)."""
    nic = unplugging_nic(make_nic, vm)
    agent.emit("device_removed", vm.id, nic.device.alias)
    selects = [s for s in _statements_of_one_poll(monitor, host, engine_) if s.upper().startswith("SELECT")]
    assert read(VmDevice, nic.id).plug_state == "stable"
    assert len(selects) == 3, selects
    assert "FROM hosts" in selects[0] and "FROM vm_devices" in selects[1] and "FROM vms" not in selects[1]
    assert "vm_devices" in selects[2] and "FROM vms" in selects[2]


def test_an_event_about_a_device_already_settled_costs_one_read_for_the_batch(monitor, agent, host, vm, make_nic,
                                                                               read, engine_, audits):
    """The usual device_removed: the unplug's command finished the row before the monitor got the event
    (the agent journals it as it answers). Nothing to change, so no savepoint and no VM or device is
    loaded: the batch's one read of the devices being unplugged says so, and the journal mark moves in
    one statement, with no transaction around it on PostgreSQL."""
    nic = make_nic(vm, is_plugged=False)
    other = unplugging_nic(make_nic, vm)
    agent.emit("device_removed", vm.id, nic.device.alias)
    statements = _statements_of_one_poll(monitor, host, engine_)
    assert not [s for s in statements if "SAVEPOINT" in s.upper()], statements
    assert not [s for s in statements if "FROM vms" in s], statements
    assert len([s for s in statements if s.upper().startswith("SELECT")]) == 2, statements
    assert [s.split()[0].upper() for s in statements][-2:] == ["SELECT", "UPDATE"], statements
    assert "FROM vm_devices" in statements[-2] and "UPDATE hosts" in statements[-1]
    assert read(Host, host.id).last_event_seq == agent.seq
    assert read(VmDevice, nic.id).plug_state == "stable" and read(VmDevice, nic.id).is_plugged is False
    assert read(VmDevice, other.id).plug_state == "unplugging"     # the event is not about it
    assert audits("NIC_UNPLUGGED") == []


def test_reconcile_host_reads_all_its_vms_in_one_call(monitor, agent, host, vm, make_vm, make_nic, read):
    """One VM.list answers for every VM of the host (VM.getDevices per VM cost a call and two
    transactions each): a lost NIC is repaired, a VM the host does not know and one it reports down
    are marked down, and the shut-off domain is undefined."""
    unknown = make_vm("vm-unknown", host=host, status="up")
    shut_off = make_vm("vm-shut-off", host=host, status="up")
    lost = make_nic(vm, is_plugged=True, address=PCI)
    kept = make_nic(vm, is_plugged=True, address=PCI2)
    agent.run(vm.id, nic_dev(kept.device.alias, PCI2))
    agent.run(shut_off.id, status="down")
    assert monitor.reconcile_host(host) == 3
    assert [verb for verb, _ in agent.calls if verb.startswith("VM.")] == ["VM.list", "VM.destroy"]
    assert agent.sent("VM.destroy") == [{"vmId": shut_off.id, "undefine": True}]
    assert read(VmDevice, lost.id).is_plugged is False and read(VmDevice, kept.id).is_plugged is True
    assert read(Vm, unknown.id).status == "down" and read(Vm, shut_off.id).status == "down"
    assert read(Vm, vm.id).status == "up"


def test_reconcile_all_settles_transitions_of_stopped_vms(monitor, agent, host, vm, make_vm, make_host, fakes,
                                                          make_nic, read):
    down = make_vm("vm-down", status="down")
    pending_unplug = unplugging_nic(make_nic, down, started=1)
    pending_plug = make_nic(down, is_plugged=False, plug_state="plugging", plug_started_at=ago(1))
    lost = make_nic(vm, is_plugged=True, address=PCI)
    agent.run(vm.id)
    maint = make_host("h-maint", status="maintenance")
    make_vm("vm-maint", host=maint, status="up")
    assert monitor.reconcile_all() == 3
    assert read(VmDevice, lost.id).is_plugged is False
    assert (read(VmDevice, pending_unplug.id).plug_state,
            read(VmDevice, pending_unplug.id).is_plugged) == ("stable", False)
    assert (read(VmDevice, pending_plug.id).plug_state, read(VmDevice, pending_plug.id).is_plugged) == ("stable", False)
    assert fakes.by_name.get("h-maint") is None


def test_periodic_reconcile_respects_the_grace(monitor, agent, make_vm, make_nic, read):
    down = make_vm("vm-down", status="down")
    young = unplugging_nic(make_nic, down, started=1)
    old = unplugging_nic(make_nic, down, started=600)
    assert monitor.reconcile_all(startup=False) == 1
    assert read(VmDevice, young.id).plug_state == "unplugging"
    assert read(VmDevice, old.id).plug_state == "stable"


def test_a_spread_round_spaces_the_hosts_turns_out_and_a_stop_ends_it(monitor, fakes, host, vm, make_host,
                                                                       make_vm, agent):
    """The periodic round gives each host its turn at an even step across `spread` seconds, so that its
    CPU comes between the events' instead of in one burst; stopping the monitor ends the round."""
    others = [make_host(f"h{n}") for n in range(2, 5)]
    for other in others:
        make_vm(f"vm-{other.name}", host=other, status="up")
    turns: dict[str, float] = {}
    list_vms = Monitor.reconcile_host

    def timed(self, h, **kw):
        turns[h.name] = time.monotonic()
        return list_vms(self, h, **kw)
    agent.run(vm.id)
    with mock.patch.object(Monitor, "reconcile_host", timed):
        begun = time.monotonic()
        monitor.reconcile_all(startup=False, spread=0.8)
        offsets = sorted(t - begun for t in turns.values())
        assert len(offsets) == 4
        # No turn comes before its step (0, 0.2, 0.4, 0.6 s: a burst would fail this); how late a turn
        # may come under a loaded machine is bounded loosely, not timed.
        assert all(offset >= 0.2 * i - 0.01 for i, offset in enumerate(offsets)), offsets
        assert offsets[-1] < 0.8 + 2.0, offsets
        turns.clear()
        threading.Timer(0.1, monitor._stop.set).start()
        begun = time.monotonic()
        monitor.reconcile_all(startup=False, spread=8.0)
        assert len(turns) == 1 and time.monotonic() - begun < 4.0     # the stop ended the 8 s round


def test_a_periodic_round_rests_after_each_turn_in_proportion_to_its_cpu(monitor, host, make_host):
    """A periodic round's thread takes at most RECONCILE_SHARE of a core: after a turn that used c
    seconds of CPU it rests c * (1 / share - 1) before the next one. The round at start-up (no spread)
    goes at full speed."""
    for n in range(2, 4):
        make_host(f"h{n}")
    burn, waits = 0.03, []
    rest = burn * (1 / runner.RECONCILE_SHARE - 1)

    def busy(self, h, **kw):
        until = time.thread_time() + burn
        while time.thread_time() < until:
            pass
        return 0
    real_wait = monitor._stop.wait

    def wait(seconds):
        waits.append(seconds)
        return real_wait(seconds)
    with mock.patch.object(Monitor, "reconcile_host", busy), mock.patch.object(monitor._stop, "wait", wait):
        monitor.reconcile_all(startup=False, spread=0.001)
        assert len(waits) == 2 and all(rest - 0.01 <= w <= rest + 0.01 for w in waits), waits
        waits.clear()
        monitor.reconcile_all(startup=True)
        assert waits == []


def test_other_device_kinds_get_their_own_audit_codes(sessions, monitor, agent, vm, read, audits):
    with sessions.begin() as s:
        dev = VmDevice(id="d0000000-0000-0000-0000-000000000001", vm_id=vm.id, type="hostdev", device="usb",
                       is_plugged=True, plug_state="stable", alias="ua-d0000000-0000-0000-0000-000000000001",
                       address={"type": "usb", "bus": "0", "port": "1"})
        s.add(dev)
    agent.run(vm.id)
    assert monitor.reconcile_vm(vm) == 1
    assert [a.device_id for a in audits("HOSTDEV_STATE_REPAIRED")] == [dev.id]


# ---- threads --------------------------------------------------------------------------------------

def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_start_polls_every_host_and_stop_ends_it(sessions, fakes, agent, host, vm, make_nic, make_host, read):
    nic = unplugging_nic(make_nic, vm)
    other = make_host("h2")
    fakes(other).unreachable = True
    mon = Monitor(sessions, fakes, poll_timeout=0.05, reconcile_interval=0.2, retry_delay=0.05)
    mon.start()
    try:
        assert mon.running
        agent.emit("device_removed", vm.id, nic.device.alias)
        assert wait_for(lambda: read(VmDevice, nic.id).plug_state == "stable")
        assert wait_for(lambda: read(Host, other.id).status == "unreachable")
        agent.run(vm.id)     # the periodic reconciliation reads the host's VMs
        assert wait_for(lambda: any(verb == "VM.list" for verb, _ in agent.calls))
    finally:
        mon.stop(timeout=5)
    assert not mon.running
    assert wait_for(lambda: all(not t.is_alive() for t in mon._pollers.values()))
    polls = len(agent.calls)
    time.sleep(0.2)
    assert len(agent.calls) == polls


def stopping(mon: Monitor) -> threading.Thread:
    """mon.stop() in a thread of its own (a stop that waits where it should not would hang the test)."""
    thread = threading.Thread(target=mon.stop, kwargs={"timeout": 60}, daemon=True)
    thread.start()
    return thread


def test_stop_does_not_wait_for_a_long_poll_and_what_it_brings_later_is_left_to_the_next_leader(
        sessions, fakes, agent, host, vm, make_nic, read, audits):
    """A poll waits on its agent for up to poll_timeout: stop returns without it (a graceful restart
    hands the monitor over at once), and the events it brings afterwards are not applied -- the
    journal mark stays, so the next leader reads them."""
    nic = unplugging_nic(make_nic, vm)
    polling, answer = threading.Event(), threading.Event()

    def hold(verb, _params):
        if verb == "Host.getEvents":
            polling.set()
            answer.wait(30)
    agent.on_call = hold
    mon = Monitor(sessions, fakes, poll_timeout=30, reconcile_interval=60, retry_delay=0.05)
    mon.start()
    try:
        assert polling.wait(5)
        agent.emit("device_removed", vm.id, nic.device.alias)
        stop = stopping(mon)
        stop.join(5)
        assert not stop.is_alive(), "stop waited for the long-poll"
        (poller,) = mon._pollers.values()
        assert poller.is_alive()                # still waiting on its agent
    finally:
        answer.set()
    assert wait_for(lambda: not poller.is_alive())
    assert read(Host, host.id).last_event_seq == 0
    assert read(VmDevice, nic.id).plug_state == "unplugging"
    assert audits("NIC_UNPLUGGED") == []


def test_stop_waits_for_a_poller_applying_what_its_poll_brought(sessions, fakes, agent, host, vm, make_nic, read):
    nic = unplugging_nic(make_nic, vm)
    applying, go_on = threading.Event(), threading.Event()
    real = events_mod.to_apply

    def slow(s, events):
        applying.set()
        go_on.wait(30)
        return real(s, events)
    agent.emit("device_removed", vm.id, nic.device.alias)
    mon = Monitor(sessions, fakes, poll_timeout=0.05, reconcile_interval=60, retry_delay=0.05)
    with mock.patch.object(events_mod, "to_apply", slow):
        mon.start()
        try:
            assert applying.wait(5)
            stop = stopping(mon)
            stop.join(0.5)
            assert stop.is_alive(), "stop returned while a batch was being applied"
        finally:
            go_on.set()
        stop.join(10)
        assert not stop.is_alive()
    assert read(Host, host.id).last_event_seq == 1
    assert read(VmDevice, nic.id).plug_state == "stable"


def long_polling(agent, *, on_poll=lambda params: None, on_answer=lambda answer: None) -> None:
    """Make the scripted agent hold Host.getEvents until there is an event, as the real one does;
    on_poll sees each poll's params, on_answer each poll's answer."""
    call, emit, appended = agent.call, agent.emit, threading.Condition()

    def emitting(*args, **kw):
        with appended:
            seq = emit(*args, **kw)
            appended.notify_all()
        return seq

    def polling(verb, params=None, **kw):
        if verb == "Host.getEvents":
            on_poll(params)
            with appended:
                appended.wait_for(lambda: agent.seq > params["after"], params["timeout"])
        answer = call(verb, params, **kw)
        if verb == "Host.getEvents":
            on_answer(answer)
        return answer
    agent.call, agent.emit = polling, emitting


def test_a_poller_lingers_after_a_batch_so_that_the_next_events_come_in_one(sessions, fakes, agent, host, vm,
                                                                             make_nic, read):
    """A busy host's events come in batches (each costs a poll, a read and a move of the journal mark):
    after a poll that brought events the poller waits `linger` before it polls again."""
    first, second, third = (unplugging_nic(make_nic, vm) for _ in range(3))
    answers: list[list[int]] = []
    long_polling(agent, on_answer=lambda answer: answer["events"] and answers.append(
        [e["seq"] for e in answer["events"]]))
    mon = Monitor(sessions, fakes, poll_timeout=5, reconcile_interval=60, retry_delay=0.05, linger=1.0)
    mon.start()
    try:
        agent.emit("device_removed", vm.id, first.device.alias)
        assert wait_for(lambda: read(VmDevice, first.id).plug_state == "stable")
        agent.emit("device_removed", vm.id, second.device.alias)
        time.sleep(0.1)         # without the linger, the second event is polled alone meanwhile
        agent.emit("device_removed", vm.id, third.device.alias)
        assert wait_for(lambda: read(VmDevice, third.id).plug_state == "stable")
    finally:
        mon.stop(timeout=5)
    assert answers == [[1], [2, 3]]
    assert read(VmDevice, second.id).plug_state == "stable"


def test_after_a_batch_a_poller_polls_again_with_the_row_its_take_returned(sessions, fakes, agent, host, vm,
                                                                           make_nic, read, monkeypatch):
    """The take of a batch returns the host's row as it left it (its new mark, its status): the next
    poll starts from it without reading the host again. A poll that consumed nothing reads it."""
    first, second = (unplugging_nic(make_nic, vm) for _ in range(2))
    afters: list[int] = []
    long_polling(agent, on_poll=lambda params: afters.append(params["after"]))
    mon = Monitor(sessions, fakes, poll_timeout=5, reconcile_interval=60, retry_delay=0.05, linger=0.01)
    reads: list[str] = []
    real_read = mon._read_host
    monkeypatch.setattr(mon, "_read_host", lambda host_id: reads.append(host_id) or real_read(host_id))
    mon.start()
    try:
        assert wait_for(lambda: afters == [0])
        agent.emit("device_removed", vm.id, first.device.alias)
        assert wait_for(lambda: read(VmDevice, first.id).plug_state == "stable" and len(afters) == 2)
        agent.emit("device_removed", vm.id, second.device.alias)
        assert wait_for(lambda: read(VmDevice, second.id).plug_state == "stable" and len(afters) == 3)
    finally:
        mon.stop(timeout=5)
    assert afters == [0, 1, 2]
    assert reads == [host.id]


def test_a_host_added_later_is_polled_within_the_shorter_of_retry_delay_and_the_interval(sessions, fakes, host,
                                                                                           make_host):
    mon = Monitor(sessions, fakes, poll_timeout=0.05, reconcile_interval=0.3, retry_delay=30)
    mon.start()
    try:
        assert wait_for(lambda: host.id in mon._pollers)
        later = make_host("h-later")
        assert wait_for(lambda: later.id in mon._pollers, timeout=2.0)
    finally:
        mon.stop(timeout=5)


# ---- with the shared contract-checking fake, and over real HTTP -----------------------------------

def test_with_the_contract_checking_fake_host(sessions, host, vm, make_nic, read):
    from tests.unit.engine.fakehost import FakeHosts

    hosts = FakeHosts()
    fake = hosts[host.name]
    nic = unplugging_nic(make_nic, vm)
    kept = make_nic(vm, is_plugged=True, address=PCI2)
    dom = fake.add_domain(vm.id)
    dom.devices.append(nic_dev(nic.device.alias))
    dom.devices.append(nic_dev(kept.device.alias, PCI2))
    mon = Monitor(sessions, hosts, poll_timeout=0.1)
    fake.finish_unplug(vm.id, nic.device.alias)
    assert mon.run_once(host) == 1                       # params valid against schema/verbs.yaml
    assert read(VmDevice, nic.id).is_plugged is False
    assert mon.reconcile_vm(vm) == 0
    assert fake.sent("VM.getDevices") == [{"vmId": vm.id}]
    assert read(VmDevice, kept.id).is_plugged is True


def test_over_json_rpc(sessions, make_host, make_vm, make_nic, read):
    from engine.config import EngineConfig
    from engine.jsonrpc_client import client_factory
    from tests.unit.engine.test_jsonrpc_client import CannedServer, _serve

    server = _serve(CannedServer())
    try:
        h = make_host("h-http", url=server.url)
        v = make_vm("vm-http", host=h, status="up")
        nic = unplugging_nic(make_nic, v)
        server.canned["Host.getEvents"] = ("result", {"last": 7, "events": [
            {"seq": 7, "time": time.time(), "kind": "device_removed", "vmId": v.id,
             "alias": nic.device.alias, "data": {"elapsed": 0.1}}]})
        server.canned["VM.getDevices"] = ("error", {"code": 1, "message": "Virtual machine does not exist",
                                                    "data": {"name": "noVM"}})
        factory = client_factory(EngineConfig(host_timeout=2, host_connect_timeout=1))
        mon = Monitor(sessions, factory, poll_timeout=0.1)
        assert mon.run_once(h) == 1
        assert read(VmDevice, nic.id).is_plugged is False
        assert read(Host, h.id).last_event_seq == 7
        assert mon.reconcile_vm(v) == 1
        assert read(Vm, v.id).status == "down"
        factory.close()
    finally:
        server.shutdown()
        server.server_close()


def test_from_config(sessions, fakes):
    from engine.config import EngineConfig

    mon = Monitor.from_config(sessions, fakes, EngineConfig(poll_timeout=20, reconcile_interval=30, stale_after=400,
                                                            host_timeout=10, unplug_wait=15))
    assert (mon.poll_timeout, mon.reconcile_interval, mon.stale_after) == (20, 30, 400)
    assert mon.in_flight_grace >= 10 + 15     # longer than any command's host call


# ---- USB devices pulled and plugged back ------------------------------------------------------------

def held_key(sessions, monitor, agent, host, vm, *, in_domain: bool = True) -> tuple[int, VmDevice]:
    """The host's key, allocated to the running VM through a plugged hostdev row."""
    from engine.dao import host_devices
    agent.hostdevs[:] = [usb_key("usb_1_5")]
    monitor.refresh_inventory(host)
    with sessions.begin() as s:
        (hd,) = host_devices.list_for_host(s, host.id)
        assert host_devices.claim(s, hd.id, vm.id) and host_devices.allocate(s, hd.id, vm.id)
        dev = VmDevice(id="d0000000-0000-0000-0000-0000000000a1", vm_id=vm.id, type="hostdev", device="usb",
                       is_plugged=True, plug_state="stable", alias="ua-d0000000-0000-0000-0000-0000000000a1",
                       spec_params={"source": {"portPath": "1-2"}, "startupPolicy": "optional"},
                       host_device_id=hd.id)
        s.add(dev)
        hd_id = hd.id
    agent.run(vm.id, *([{"type": "hostdev", "device": "usb", "alias": dev.alias}] if in_domain else []))
    return hd_id, dev


def test_a_held_device_plugged_back_is_reattached_to_its_vm(sessions, monitor, agent, host, vm, read, audits):
    from engine.dao.models import HostDevice
    hd_id, dev = held_key(sessions, monitor, agent, host, vm)
    agent.hostdevs.clear()
    agent.emit("hostdev_removed", None, None, name="usb_1_5")
    monitor.run_once(host)
    assert (read(HostDevice, hd_id).present, read(HostDevice, hd_id).status) == (False, "allocated")
    assert monitor.reconcile_vm(vm) == 0                 # libvirt keeps the pulled device: nothing to repair
    agent.calls.clear()
    agent.hostdevs.append(usb_key("usb_1_9"))            # same port, ids and serial; new bus/device
    agent.emit("hostdev_added", None, None, name="usb_1_9")
    monitor.run_once(host)
    verbs = [v for v, p in agent.calls if v.startswith("VM.")]
    assert verbs == ["VM.hotunplugHostdev", "VM.hotplugHostdev"]
    assert [p["hostdev"]["source"] for v, p in agent.calls if v == "VM.hotplugHostdev"] == [{"portPath": "1-2"}]
    row = read(HostDevice, hd_id)
    assert (row.present, row.status, row.vm_id) == (True, "allocated", vm.id)
    assert (read(VmDevice, dev.id).is_plugged, read(VmDevice, dev.id).plug_state) == (True, "stable")
    (event,) = audits("HOSTDEV_REATTACHED")
    assert (event.vm_id, event.device_id) == (vm.id, dev.id)


def test_a_device_dropped_at_start_waits_and_is_plugged_when_it_comes(sessions, monitor, agent, host, vm, read,
                                                                       audits):
    hd_id, dev = held_key(sessions, monitor, agent, host, vm, in_domain=False)
    agent.hostdevs.clear()
    monitor.refresh_inventory(host)
    assert monitor.reconcile_vm(vm) == 0                 # plugged and absent, but its device is gone: it waits
    assert read(VmDevice, dev.id).is_plugged
    agent.hostdevs.append(usb_key("usb_1_9"))
    monitor.refresh_inventory(host)
    assert [v for v, p in agent.calls if v.startswith("VM.hot")] == ["VM.hotunplugHostdev", "VM.hotplugHostdev"]
    assert [a.device_id for a in audits("HOSTDEV_REATTACHED")] == [dev.id]


def test_another_device_on_the_port_is_not_reattached(sessions, monitor, agent, host, vm, read, audits):
    from engine.dao.models import HostDevice
    hd_id, dev = held_key(sessions, monitor, agent, host, vm)
    agent.hostdevs.clear()
    monitor.refresh_inventory(host)
    agent.hostdevs.append(usb_key("usb_1_9", serial="OTHER"))      # another key in the same port
    monitor.refresh_inventory(host)
    assert not [v for v, p in agent.calls if v.startswith("VM.hot")]
    assert read(HostDevice, hd_id).present is False and audits("HOSTDEV_REATTACHED") == []


def test_a_device_of_a_stopped_vm_is_not_plugged_anywhere(sessions, monitor, agent, host, make_vm, read, audits):
    down = make_vm("vm-down", status="down")
    held_key(sessions, monitor, agent, host, down)
    agent.hostdevs.clear()
    monitor.refresh_inventory(host)
    agent.hostdevs.append(usb_key("usb_1_9"))
    monitor.refresh_inventory(host)
    assert not [v for v, p in agent.calls if v.startswith("VM.hot")]
    assert [e.vm_id for e in audits("HOST_DEVICE_FOUND")] == [down.id]


def test_a_failed_reattach_leaves_the_device_free_with_its_error(sessions, monitor, agent, host, vm, read, audits):
    from engine.dao.models import HostDevice
    hd_id, dev = held_key(sessions, monitor, agent, host, vm)
    agent.hostdevs.clear()
    monitor.refresh_inventory(host)

    def refuse(verb, params):
        if verb == "VM.hotplugHostdev":
            raise HostCallFailed("VM.hotplugHostdev failed", host=agent.name, host_code=301,
                                 host_message="Failed to hotplug host device")
    agent.on_call = refuse
    agent.hostdevs.append(usb_key("usb_1_9"))
    monitor.refresh_inventory(host)
    assert read(VmDevice, dev.id).is_plugged is False and read(HostDevice, hd_id).status == "available"
    assert audits("HOSTDEV_REATTACHED") == [] and len(audits("HOSTDEV_PLUG_FAILED")) == 1


def test_the_host_dropping_an_optional_device_at_start_is_told_to_the_vm(sessions, monitor, agent, host, vm,
                                                                         audits):
    hd_id, dev = held_key(sessions, monitor, agent, host, vm, in_domain=False)
    agent.calls.clear()
    agent.emit("hostdev_dropped", vm.id, dev.alias, reason="host device not present; startup policy optional")
    monitor.run_once(host)
    (event,) = audits("HOSTDEV_DROPPED")
    assert (event.vm_id, event.device_id, event.severity) == (vm.id, dev.id, "warning")
    assert ("Host.hostdevListByCaps", {"caps": ["usb_device"]}) in agent.calls     # the inventory was stale
