"""A VM defined with a USB device that is then pulled from the host: an optional device is dropped at
start (and reported), a required one refuses the start."""
from __future__ import annotations

import pytest

from engine.errors import HostCallFailed
from tests.testhost.conftest import CCID, journal_last, refused, wait_event

EVENT_TIMEOUT = 15


def _defined_then_pulled(testhost, agent, idle_vm, name: str, policy: str, port: int) -> str:
    after = journal_last(agent)
    testhost.plug_usb(f"ext-{name}", "usb-ccid", port=port)
    try:
        wait_event(agent, after, lambda e: e["kind"] == "hostdev_added", EVENT_TIMEOUT, "hostdev_added")
        hostdev = {"type": "hostdev", "device": "usb", "alias": f"ua-{name}", "startupPolicy": policy,
                   "source": {"vendor": CCID[0], "product": CCID[1]}}
        vm_id = idle_vm(name, define=True, devices=[hostdev])
        after = journal_last(agent)
    finally:
        testhost.pull_usb(f"ext-{name}")
    wait_event(agent, after, lambda e: e["kind"] == "hostdev_removed", EVENT_TIMEOUT, "hostdev_removed")
    return vm_id


def test_optional_device_dropped_at_start(testhost, agent, idle_vm):
    vm_id = _defined_then_pulled(testhost, agent, idle_vm, "policy-optional", "optional", port=6)
    after = journal_last(agent)
    started = agent.call("VM.start", {"vmId": vm_id})
    assert started["status"] == "up"
    assert not [d for d in started["devices"] if d["type"] == "hostdev"]
    dropped = wait_event(agent, after, lambda e: e["kind"] == "hostdev_dropped", 5, "hostdev_dropped")
    assert (dropped["vmId"], dropped["alias"]) == (vm_id, "ua-policy-optional")


def test_required_device_refuses_the_start(testhost, agent, idle_vm):
    vm_id = _defined_then_pulled(testhost, agent, idle_vm, "policy-mandatory", "mandatory", port=7)
    with pytest.raises(HostCallFailed) as e:
        agent.call("VM.start", {"vmId": vm_id})
    refused(e, "hookRefused")
    assert agent.call("VM.getDevices", {"vmId": vm_id})["status"] == "down"
