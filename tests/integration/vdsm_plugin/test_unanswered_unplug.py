"""A guest that never answers the unplug request: the agent says `pending` without sending a second
detach, and the DEVICE_REMOVED that a reset produces lands in the journal."""
from __future__ import annotations

import uuid

import libvirt
import pytest

from tests.integration.vdsm_plugin.conftest import RpcError, destroy_quietly


@pytest.fixture(scope="module")
def silent_vm(rpc):
    vm_id = str(uuid.uuid4())
    rpc("VM.create", vmId=vm_id, params={"name": f"pb-silent-{vm_id[:8]}", "memSize": 64, "vcpus": 1,
                                         "machine": "pc"})
    yield vm_id
    destroy_quietly(rpc, vm_id)


def test_pending_then_event_after_reset(rpc, silent_vm, libvirt_uri):
    nic = {"type": "interface", "device": "bridge", "network": "pbbr0", "alias": "ua-slow",
           "macAddr": "56:6f:1a:20:00:01", "nicModel": "pv"}
    rpc("VM.hotplugNic", vmId=silent_vm, nic=nic)
    last = rpc("Host.getEvents")["last"]
    assert rpc("VM.hotunplugNic", vmId=silent_vm, nic={"alias": "ua-slow"}) == {"status": "pending", "alias": "ua-slow"}
    with pytest.raises(RpcError) as e:     # never a second detach while one is in flight
        rpc("VM.hotunplugNic", vmId=silent_vm, nic={"alias": "ua-slow"})
    assert e.value.code == 305
    assert "ua-slow" in {d["alias"] for d in rpc("VM.getDevices", vmId=silent_vm)["devices"]}

    conn = libvirt.open(libvirt_uri)
    try:
        conn.lookupByUUIDString(silent_vm).reset()
    finally:
        conn.close()
    events = rpc("Host.getEvents", after=last, timeout=10)["events"]
    assert [(e["kind"], e["alias"]) for e in events if e["kind"] == "device_removed"] == [("device_removed", "ua-slow")]
    assert "ua-slow" not in {d["alias"] for d in rpc("VM.getDevices", vmId=silent_vm)["devices"]}
