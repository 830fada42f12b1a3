"""USB passthrough into a running L2: each way of naming a device, and each refusal."""
from __future__ import annotations

from typing import Any

import pytest

from engine.errors import HostCallFailed
from tests.testhost.machine import STICK_SERIAL
from tests.testhost.conftest import (STICK, TWIN, USB_SERIAL, by_name, find_devices, record, refused, the_device,
                                    wait_until)


def attach(agent, vm_id: str, source: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return agent.call("VM.hotplugHostdev", {"vmId": vm_id, "hostdev": {"type": "hostdev", "device": "usb",
                                                                       "source": source, **extra}})


def detach(agent, vm_id: str, alias: str) -> dict[str, Any]:
    return agent.call("VM.hotunplugHostdev", {"vmId": vm_id, "hostdev": {"alias": alias}})


def _stick(dev):
    return {"vendor": dev["vendorId"], "product": dev["productId"]}


def _twin_by_port(agent):
    # One of two identical devices: only its port tells it apart.
    return sorted(find_devices(agent, TWIN), key=lambda d: d["portPath"])[-1]


WAYS = {
    "vendor and product": (lambda agent: the_device(agent, STICK), _stick),
    "port path": (_twin_by_port, lambda dev: {"portPath": dev["portPath"]}),
    "node device": (lambda agent: the_device(agent, STICK), lambda dev: {"nodeDev": dev["name"]}),
    "serial": (lambda agent: the_device(agent, STICK), lambda dev: {"serial": STICK_SERIAL}),
}


@pytest.mark.parametrize("way", list(WAYS))
def test_live_attach_and_detach(agent, l1, l2, way):
    pick, source_of = WAYS[way]
    dev = pick(agent)
    port = dev["portPath"]
    drivers = l1.usb_drivers(port)
    assert drivers, f"no driver bound to {dev['name']} in L1 before the test"

    plugged = attach(agent, l2.id, source_of(dev))
    alias = plugged["alias"]
    assert plugged["nodeDev"] == dev["name"]
    assert plugged["address"]["type"] == "usb"
    xml = l1.hostdev_xml(l2.id)
    assert f"<alias name='{alias}'/>" in xml and "<address type='usb'" in xml
    if way == "vendor and product":
        record("usb-attach-live.xml", xml)
    assert by_name(agent, dev["name"])["attachedTo"] == l2.id
    wait_until(lambda: not drivers & l1.usb_drivers(port), 15, f"L1's {drivers} released from {port}")

    gone = detach(agent, l2.id, alias)
    assert gone["status"] == "removed", gone
    wait_until(lambda: drivers <= l1.usb_drivers(port), 20, f"L1's {drivers} bound again to {port}")
    assert alias not in l1.hostdev_xml(l2.id)


def test_identical_pair_refused_as_ambiguous(agent, l2):
    with pytest.raises(HostCallFailed) as e:
        attach(agent, l2.id, {"vendor": TWIN[0], "product": TWIN[1]})
    refused(e, "hostdevAmbiguous")


def test_device_not_on_the_whitelist_refused(agent, l2):
    with pytest.raises(HostCallFailed) as e:
        attach(agent, l2.id, {"vendor": USB_SERIAL[0], "product": USB_SERIAL[1]})
    refused(e, "hostdevNotAllowed")


def test_one_device_two_vms_refused(agent, l2, idle_vm):
    other = idle_vm("l2-other")
    alias = attach(agent, l2.id, {"vendor": STICK[0], "product": STICK[1]})["alias"]
    try:
        with pytest.raises(HostCallFailed) as e:
            attach(agent, other, {"vendor": STICK[0], "product": STICK[1]})
        refused(e, "hostdevBusy")
    finally:
        assert detach(agent, l2.id, alias)["status"] == "removed"
