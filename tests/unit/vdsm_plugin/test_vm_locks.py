"""The per-VM locks of device operations: one at a time on a VM, in parallel across VMs, and nothing
left behind once no call holds or waits for a VM's lock."""
from __future__ import annotations

import threading
import uuid

import pytest

from vdsm_plugin.agent import VmLocks
from vdsm_plugin.errors import AgentError


def test_calls_on_any_number_of_vms_leave_no_lock_behind():
    locks = VmLocks(1.0)
    for _ in range(200):
        with locks.hold(str(uuid.uuid4())):
            assert len(locks) == 1
    assert len(locks) == 0


def test_a_second_call_on_a_busy_vm_waits_and_then_times_out_leaving_nothing():
    locks = VmLocks(0.2)
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with locks.hold("vm-1"):
            inside.set()
            leave.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    inside.wait(5)
    with pytest.raises(AgentError) as err:
        with locks.hold("vm-1"):
            pass
    assert err.value.name == "operationInFlight"
    with locks.hold("vm-2"):            # another VM is not held up
        assert len(locks) == 2
    leave.set()
    t.join(5)
    assert len(locks) == 0


def test_a_waiter_gets_the_lock_when_it_is_released():
    locks = VmLocks(5.0)
    order: list[str] = []
    first_in, release = threading.Event(), threading.Event()

    def first() -> None:
        with locks.hold("vm-1"):
            first_in.set()
            release.wait(5)
            order.append("first")

    t = threading.Thread(target=first)
    t.start()
    first_in.wait(5)
    threading.Timer(0.1, release.set).start()
    with locks.hold("vm-1"):
        order.append("second")
    t.join(5)
    assert order == ["first", "second"] and len(locks) == 0
