"""PCI passthrough of L1's e1000e into the booted L2 and back: managed, so L1's driver gives way to
vfio-pci and returns after the guest released the device. One cycle per run (each is slow nested)."""
from __future__ import annotations

import time

import pytest

from tests.integration.guest import wait_for_serial
from tests.testhost.conftest import L2_BOOT_TIMEOUT, E1000E, by_name, record, the_device, wait_until

# The guest's kernel reports the NIC its e1000e driver took: "e1000e 0000:01:00.0 eth0: ..."
GUEST_SEES_E1000E = r"e1000e [0-9a-f:.]+ eth[0-9]+: "


@pytest.mark.timeout(L2_BOOT_TIMEOUT + 240)   # the wait for L2's guest has its own deadline
def test_e1000e_live_into_l2_and_back(agent, l1, l2_booted):
    l2 = l2_booted
    nic = the_device(agent, E1000E)
    address = nic["pciAddress"]
    assert l1.pci_driver(address) == "e1000e"
    mark = l2.serial_log.stat().st_size

    start = time.monotonic()
    plugged = agent.call("VM.hotplugHostdev", {"vmId": l2.id, "hostdev": {
        "type": "hostdev", "device": "pci", "source": {"nodeDev": nic["name"]}}})
    attached_in = time.monotonic() - start
    assert plugged["nodeDev"] == nic["name"] and plugged["address"]["type"] == "pci"
    xml = l1.hostdev_xml(l2.id)
    assert "<driver name='vfio'/>" in xml and f"<alias name='{plugged['alias']}'/>" in xml
    record("pci-attach-live.xml", xml)
    assert l1.pci_driver(address) == "vfio-pci"
    held = by_name(agent, nic["name"])
    assert (held["driver"], held["attachedTo"]) == ("vfio-pci", l2.id)
    wait_for_serial(l2.serial_log, GUEST_SEES_E1000E, timeout=90, after_offset=mark)

    start = time.monotonic()
    gone = agent.call("VM.hotunplugHostdev", {"vmId": l2.id, "hostdev": {"alias": plugged["alias"]}})
    assert gone["status"] == "removed", gone
    detached_in = time.monotonic() - start
    wait_until(lambda: l1.pci_driver(address) == "e1000e", 30, "e1000e bound again in L1")
    assert by_name(agent, nic["name"])["attachedTo"] is None
    print(f"\ntesthost: e1000e attach {attached_in:.1f} s, detach until DEVICE_REMOVED {detached_in:.1f} s")
