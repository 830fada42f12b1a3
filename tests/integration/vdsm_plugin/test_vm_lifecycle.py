"""VM lifecycle on the real libvirtd: a destroy that arrives during a create, VMs that stopped
outside the engine, and the journal position that tells the engine which lifecycle events are stale."""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from tests.integration.vdsm_plugin.conftest import RpcError, destroy_quietly

DELAY_HOOK = """#!/bin/sh
# test hook: hold VM.create in before_vm_start for $pb_test_start_delay seconds
[ -n "$pb_test_start_delay" ] && sleep "$pb_test_start_delay"
exit 0
"""


def params(vm_id: str, **extra):
    return {"name": f"pb-life-{vm_id[:8]}", "memSize": 64, "vcpus": 1, "machine": "pc", **extra}


@pytest.fixture
def conn(libvirt_uri):
    import libvirt

    c = libvirt.open(libvirt_uri)
    yield c
    c.close()


def domain_ids(conn) -> set[str]:
    return {d.UUIDString() for d in conn.listAllDomains(0)}


def _before_vm_start_hook(agent_hooks, name: str, text: str):
    """Install a before_vm_start script for one test (the agent's hooks directory is the session's)."""
    hook = agent_hooks / "before_vm_start" / name
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(text)
    hook.chmod(0o755)
    yield
    hook.unlink()


@pytest.fixture
def slow_start(agent_hooks):
    yield from _before_vm_start_hook(agent_hooks, "05_test_start_delay", DELAY_HOOK)


def test_destroy_sent_during_create_runs_after_it(rpc, conn, slow_start):
    vm_id = str(uuid.uuid4())
    created: dict = {}

    def create():
        try:
            created["info"] = rpc("VM.create", vmId=vm_id,
                                  params=params(vm_id, customProperties={"pb_test_start_delay": "2"}))
        except RpcError as e:
            created["error"] = e

    creating = threading.Thread(target=create)
    creating.start()
    try:
        time.sleep(0.7)                      # the create is in its before_vm_start hook
        assert rpc("VM.destroy", vmId=vm_id) == {"vmId": vm_id, "status": "down"}
        creating.join(30)
        assert "error" not in created and created["info"]["status"] == "up"
        assert vm_id not in domain_ids(conn), "the destroy left the created domain behind"
    finally:
        creating.join(30)
        destroy_quietly(rpc, vm_id)


def nic(alias: str, mac: str):
    return {"type": "interface", "device": "bridge", "network": "pbbr0", "alias": alias, "macAddr": mac,
            "nicModel": "pv"}


def stop_outside(rpc, conn, vm_id: str) -> None:
    """What a crash, a guest power-off or `virsh destroy` does: the persistent domain stays, shut off."""
    conn.lookupByUUIDString(vm_id).destroy()
    assert rpc("VM.getDevices", vmId=vm_id)["status"] == "down"


def test_vm_stopped_outside_the_engine_is_created_again(rpc, conn, bridge):
    vm_id = str(uuid.uuid4())
    try:
        rpc("VM.create", vmId=vm_id, params=params(vm_id))
        stop_outside(rpc, conn, vm_id)
        info = rpc("VM.create", vmId=vm_id, params=params(vm_id, name=f"pb-again-{vm_id[:8]}",
                                                          devices=[nic("ua-again", "56:6f:1a:60:00:01")]))
        assert (info["status"], info["name"]) == ("up", f"pb-again-{vm_id[:8]}")
        assert "ua-again" in {d["alias"] for d in info["devices"]}
        with pytest.raises(RpcError) as e:      # running: the engine must not replace it
            rpc("VM.create", vmId=vm_id, params=params(vm_id))
        assert e.value.code == 4
        assert rpc("VM.getDevices", vmId=vm_id)["name"] == f"pb-again-{vm_id[:8]}"
    finally:
        destroy_quietly(rpc, vm_id)


def test_destroy_undefines_a_vm_stopped_outside_the_engine(rpc, conn):
    vm_id = str(uuid.uuid4())
    try:
        rpc("VM.create", vmId=vm_id, params=params(vm_id))
        stop_outside(rpc, conn, vm_id)
        assert rpc("VM.destroy", vmId=vm_id, undefine=True) == {"vmId": vm_id, "status": "down"}
        assert vm_id not in domain_ids(conn)
        assert vm_id not in {v["vmId"] for v in rpc("VM.list")["vms"]}
    finally:
        destroy_quietly(rpc, vm_id)


def lifecycle(rpc, vm_id: str, after: int, timeout: float = 0) -> list[tuple[int, str]]:
    events = rpc("Host.getEvents", after=after, timeout=timeout, limit=1000)["events"]
    return [(e["seq"], e["data"]["event"]) for e in events if e["kind"] == "vm_lifecycle" and e["vmId"] == vm_id]


def wait_lifecycle(rpc, vm_id: str, after: int, event: str, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for seq, name in lifecycle(rpc, vm_id, after, timeout=1):
            if name == event:
                return seq
    raise AssertionError(f"no {event} event for {vm_id} after {after}")


def test_create_and_start_answer_the_journal_position_of_the_start(rpc, conn):
    """Every lifecycle event from before a create or start (the stop of the previous run, the
    undefine of a replaced definition) is at or before its eventSeq; the start itself is eventSeq."""
    vm_id = str(uuid.uuid4())
    begin = rpc("Host.getEvents")["last"]
    try:
        first = rpc("VM.create", vmId=vm_id, params=params(vm_id))["eventSeq"]
        assert (first, "started") in lifecycle(rpc, vm_id, begin)

        conn.lookupByUUIDString(vm_id).destroy()        # stopped outside the engine
        stopped = wait_lifecycle(rpc, vm_id, first, "stopped")
        again = rpc("VM.create", vmId=vm_id, params=params(vm_id))["eventSeq"]
        before = lifecycle(rpc, vm_id, first)
        assert (again, "started") in before and stopped < again
        assert "undefined" in [name for seq, name in before if seq < again]
        late = [name for _, name in lifecycle(rpc, vm_id, again, timeout=1)]
        assert not {"stopped", "undefined", "shutdown", "crashed"} & set(late), late

        rpc("VM.destroy", vmId=vm_id, undefine=False)
        third = rpc("VM.start", vmId=vm_id)["eventSeq"]
        assert third > again and (third, "started") in lifecycle(rpc, vm_id, again)
        assert "stopped" not in [name for _, name in lifecycle(rpc, vm_id, third, timeout=1)]
    finally:
        destroy_quietly(rpc, vm_id)


DROP_NICS_HOOK = """#!/usr/bin/env python3
# test hook: leave the NICs out of this start when the VM's custom property pb_test_drop_nics is set
import os
from lxml import etree
if os.environ.get("pb_test_drop_nics"):
    path = os.environ["_hook_domxml"]
    tree = etree.parse(path)
    for el in tree.findall("devices/interface"):
        el.getparent().remove(el)
    tree.write(path)
"""


@pytest.fixture
def drop_nics_hook(agent_hooks):
    yield from _before_vm_start_hook(agent_hooks, "06_test_drop_nics", DROP_NICS_HOOK)


def test_a_before_vm_start_hook_edits_the_start_and_not_the_stored_definition(rpc, conn, bridge, drop_nics_hook):
    import libvirt

    vm_id = str(uuid.uuid4())
    try:
        info = rpc("VM.create", vmId=vm_id, params=params(vm_id, customProperties={"pb_test_drop_nics": "1"},
                                                          devices=[nic("ua-kept", "56:6f:1a:60:00:02")]))
        assert "ua-kept" not in {d["alias"] for d in info["devices"]}           # this run: as the hook left it
        dom = conn.lookupByUUIDString(vm_id)
        assert "ua-kept" not in dom.XMLDesc(0)
        assert "ua-kept" in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)      # the stored one: as asked
        stop_outside(rpc, conn, vm_id)
        assert "ua-kept" in {d["alias"] for d in rpc("VM.getDevices", vmId=vm_id)["devices"]}
    finally:
        destroy_quietly(rpc, vm_id)
