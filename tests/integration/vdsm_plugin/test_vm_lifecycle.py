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


@pytest.fixture
def slow_start(agent_hooks):
    hook = agent_hooks / "before_vm_start" / "05_test_start_delay"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(DELAY_HOOK)
    hook.chmod(0o755)
    yield
    hook.unlink()


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
