"""The simulated agents keep the agent's contract: reached through the engine's own JSON-RPC client, a
call that breaks a verb's schema gets the contract's coded error, every answer is valid against the
verb's result schema, and each host has its own journal, answered by a long poll."""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from engine.errors import HostCallFailed
from engine.jsonrpc_client import JsonRpcHostClient
from tests import contract
from tests.sim.agent import SimAgents

MAC = "56:6f:1a:00:00:01"


@pytest.fixture
def agents() -> Iterator[SimAgents]:
    sim = SimAgents(usb=2, pci=3)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def client(agents: SimAgents, n: int) -> JsonRpcHostClient:
    return JsonRpcHostClient(f"sim{n}", agents.url(n), timeout=30)


def call(agent: JsonRpcHostClient, verb: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call `verb` and check the answer against its result schema."""
    result = agent.call(verb, params or {})
    problems = [e.message for e in contract.validator(verb, "result").iter_errors(result)]
    assert problems == [], f"{verb} answered outside its contract: {problems}"
    return result


def vm_params(name: str = "vm1") -> dict[str, Any]:
    return {"name": name, "memSize": 256, "vcpus": 1, "machine": "pc",
            "devices": [{"type": "interface", "device": "bridge", "network": "ovirtmgmt", "alias": "ua-nic0",
                         "macAddr": "56:6f:1a:00:00:00", "nicModel": "virtio"}]}


def test_bad_params_get_the_contracts_coded_error(agents):
    with client(agents, 1) as agent:
        with pytest.raises(HostCallFailed) as caught:
            agent.call("VM.hotplugNic", {"vmId": str(uuid.uuid4()), "nic": {"type": "interface"}})
    assert caught.value.host_code == contract.error_code("invalidParams") == -32602
    assert caught.value.host_error_name == "invalidParams"
    assert "nic" in caught.value.host_message


def test_an_unknown_verb_is_method_not_found(agents):
    with client(agents, 1) as agent:
        with pytest.raises(HostCallFailed) as caught:
            agent.call("VM.migrate", {})
    assert caught.value.host_code == -32601


def test_a_verb_error_carries_its_code_and_name(agents):
    with client(agents, 1) as agent:
        with pytest.raises(HostCallFailed) as caught:
            agent.call("VM.getDevices", {"vmId": str(uuid.uuid4())})
    assert caught.value.host_code == contract.error_code("noVM")
    assert caught.value.host_error_name == "noVM"


def test_each_host_is_its_own_host(agents):
    with client(agents, 1) as one, client(agents, 2) as two:
        assert call(one, "Host.getCapabilities")["hostname"] == "sim1"
        assert call(two, "Host.getCapabilities")["hostname"] == "sim2"
        call(one, "VM.create", {"vmId": str(uuid.uuid4()), "params": vm_params()})
        assert len(call(one, "VM.list")["vms"]) == 1
        assert call(two, "VM.list")["vms"] == []
        assert call(two, "Host.getEvents", {"after": 0, "timeout": 0}) == {"events": [], "last": 0}


def test_host_devices_are_listed_by_capability_and_name(agents):
    with client(agents, 7) as agent:
        devices = call(agent, "Host.hostdevListByCaps", {"caps": ["usb_device", "pci"]})["devices"]
        assert [d["capability"] for d in devices] == ["usb_device"] * 2 + ["pci"] * 3
        named = call(agent, "Host.hostdevListByCaps", {"caps": ["pci"], "names": ["pci_0000_03_00_0"]})
        assert [d["pciAddress"] for d in named["devices"]] == ["0000:03:00.0"]


def test_plug_and_unplug_land_in_the_journal(agents):
    vm_id = str(uuid.uuid4())
    with client(agents, 3) as agent:
        started = call(agent, "VM.create", {"vmId": vm_id, "params": vm_params()})
        nic = call(agent, "VM.hotplugNic", {"vmId": vm_id, "nic": {
            "type": "interface", "device": "bridge", "network": "ovirtmgmt", "alias": "ua-nic1", "macAddr": MAC,
            "nicModel": "virtio"}})
        assert nic["alias"] == "ua-nic1" and nic["address"]["type"] == "pci"
        assert call(agent, "VM.hotunplugNic", {"vmId": vm_id, "nic": {"alias": "ua-nic1"}})["status"] == "removed"
        journal = call(agent, "Host.getEvents", {"after": 0, "timeout": 0})
    seq = started["eventSeq"]
    kinds = [(e["seq"], e["kind"], e["alias"]) for e in journal["events"]]
    assert kinds == [(seq, "vm_lifecycle", None), (seq + 1, "device_removed", "ua-nic1")]
    assert journal["last"] == seq + 1


def test_a_pending_unplug_ends_with_the_guests_event(agents):
    vm_id = str(uuid.uuid4())
    agents.host(4).pending_unplug = True
    with client(agents, 4) as agent:
        call(agent, "VM.create", {"vmId": vm_id, "params": vm_params()})
        last = call(agent, "Host.getEvents", {"after": 0, "timeout": 0})["last"]
        assert call(agent, "VM.hotunplugNic", {"vmId": vm_id, "nic": {"alias": "ua-nic0"}})["status"] == "pending"
        assert agents.control("pending", {"host": 4}) == [{"vmId": vm_id, "alias": "ua-nic0"}]
        agents.control("finish_unplug", {"host": 4, "vmId": vm_id, "alias": "ua-nic0"})
        events = call(agent, "Host.getEvents", {"after": last, "timeout": 0})["events"]
        assert [(e["kind"], e["vmId"], e["alias"]) for e in events] == [("device_removed", vm_id, "ua-nic0")]
        assert call(agent, "VM.getDevices", {"vmId": vm_id})["devices"][-1]["alias"] != "ua-nic0"


def test_a_long_poll_waits_for_the_next_event(agents):
    answers: list[dict[str, Any]] = []
    with client(agents, 5) as agent:
        poll = threading.Thread(target=lambda: answers.append(
            call(agent, "Host.getEvents", {"after": 0, "timeout": 60})))
        poll.start()
        while agents.polls_waiting == 0 and poll.is_alive():
            time.sleep(0.01)
        assert answers == []            # waiting: the journal is empty
        event = agents.host(5).emit("hostdev_added", name="usb_1_9")
        poll.join()
    assert answers == [{"events": [event], "last": 1}]
