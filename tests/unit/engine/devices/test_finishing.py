"""live.FINISHING: the live operations in their last stretch, and the monitor letting the one on a
device finish before it applies that device's event (so the command's last transaction does not wait
for the monitor's write lock)."""
from __future__ import annotations

import threading

import pytest

from engine.dao import audit
from engine.dao.models import Host, VmDevice
from engine.devices import live, state
from engine.devices.live import Finishing
from engine.monitor import Monitor
from tests.unit.engine.test_monitor import ScriptedHosts, unplugging_nic


def test_wait_answers_whether_the_devices_are_free():
    finishing = Finishing()
    with finishing.running("VM-1", "ua-a"):
        assert not finishing.wait([("vm-1", "ua-a")], timeout=0)     # VM ids compare without case
        assert finishing.wait([("vm-1", "ua-b"), ("vm-2", "ua-a")], timeout=0)
        with finishing.running("vm-1", "ua-a"):                       # two at once on one device
            pass
        assert not finishing.wait([("vm-1", "ua-a")], timeout=0)
    assert finishing.wait([("vm-1", "ua-a")], timeout=0)
    assert finishing.wait([], timeout=0)


def test_a_waiter_wakes_when_the_operation_ends():
    finishing = Finishing()
    holding, done = threading.Event(), threading.Event()
    answers: list[bool] = []

    def operation() -> None:
        with finishing.running("vm-1", "ua-a"):
            holding.set()
            done.wait()

    worker = threading.Thread(target=operation)
    worker.start()
    holding.wait()
    waiter = threading.Thread(target=lambda: answers.append(finishing.wait([("vm-1", "ua-a")], timeout=None)))
    waiter.start()
    done.set()
    waiter.join()
    worker.join()
    assert answers == [True]


def test_an_operation_that_fails_leaves_the_device_free():
    finishing = Finishing()
    with pytest.raises(RuntimeError):
        with finishing.running("vm-1", "ua-a"):
            raise RuntimeError("host call failed")
    assert finishing.wait([("vm-1", "ua-a")], timeout=0)


def test_the_monitor_applies_a_device_event_after_the_command_on_it(sessions, make_host, make_vm, make_nic,
                                                                     monkeypatch):
    """The unplug's command is between the agent's answer and its last commit when the monitor gets the
    journal's device_removed: the monitor waits, the command settles the row, and the event then finds
    nothing to do -- one NIC_UNPLUGGED, the command's."""
    fakes = ScriptedHosts()
    host = make_host("h1")
    vm = make_vm("vm1", host=host, status="up")
    nic = unplugging_nic(make_nic, vm)
    agent = fakes(host)
    agent.emit("device_removed", vm.id, nic.device.alias, elapsed=0.2)
    monitor = Monitor(sessions, fakes, poll_timeout=0.1)

    waiting = threading.Event()
    real_wait = live.FINISHING.wait

    def spy(devices, timeout):
        assert (vm.id, nic.device.alias) in list(devices)
        waiting.set()
        return real_wait(devices, timeout)

    monkeypatch.setattr(live.FINISHING, "wait", spy)
    consumed: list[int] = []
    with live.FINISHING.running(vm.id, nic.device.alias):
        poller = threading.Thread(target=lambda: consumed.append(monitor.run_once(host)))
        poller.start()
        assert waiting.wait(60), "the monitor applied the batch without asking whether a command runs"
        with sessions.begin() as s:        # the command's last transaction, while the monitor waits
            row = s.get(VmDevice, nic.id)
            assert row is not None and row.plug_state == "unplugging"
            assert state.unplugged(s, state.Subject.of(row, row.vm, host), elapsed=0.2)
    poller.join()

    assert consumed == [1]
    with sessions.begin() as s:
        [event] = audit.list(s, code="NIC_UNPLUGGED")
        assert "seq" not in event.vars          # the command's record; the monitor wrote none
        assert s.get(Host, host.id).last_event_seq == 1
        assert s.get(VmDevice, nic.id).plug_state == "stable"
