"""VM lifecycle verbs over the fake hypervisor: orders of calls and events that a real host produces
only sometimes (a destroy that arrives while a create is still running)."""
from __future__ import annotations

import threading
import uuid

import pytest

from vdsm_plugin.errors import AgentError
from vdsm_plugin.verbs import vm as vm_verbs

PARAMS = {"name": "pb-unit", "memSize": 64, "vcpus": 1, "machine": "pc"}


def _in_thread(fn, *args, **kwargs):
    """Run fn in a thread; returns (thread, outcome) where outcome gets "result" or "error"."""
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = fn(*args, **kwargs)
        except AgentError as e:
            outcome["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, outcome


def test_destroy_waits_for_a_create_in_progress(fake_agent):
    """A destroy sent while the create is still starting the domain runs after it, and removes the
    domain the create made: no orphan, no error for either call."""
    hv = fake_agent.hv
    vm_id = str(uuid.uuid4())
    hv.start_gate = threading.Event()
    creating, created = _in_thread(vm_verbs.create, fake_agent, vm_id, dict(PARAMS))
    assert hv.start_entered.wait(5)

    destroying, destroyed = _in_thread(vm_verbs.destroy, fake_agent, vm_id)
    destroying.join(0.3)
    assert destroying.is_alive(), f"destroy did not wait for the create: {destroyed}"

    hv.start_gate.set()
    creating.join(5)
    destroying.join(5)
    assert "error" not in created and created["result"]["status"] == "up"
    assert destroyed == {"result": {"vmId": vm_id, "status": "down"}}
    assert not hv.exists(vm_id)
    assert [c for c, _ in hv.calls] == ["define", "start", "destroy"]
