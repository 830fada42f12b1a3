"""Host.hostdevListByCaps on a host with real USB devices and an IOMMU."""
from __future__ import annotations

from tests.testhost.conftest import E1000E, STICK, TWIN, USB_SERIAL, find_devices, inventory, the_device
from tests.testhost.machine import STICK_SERIAL


def test_usb_devices_with_their_identity(agent):
    stick = the_device(agent, STICK)
    assert stick["capability"] == "usb_device"
    assert stick["serial"] == STICK_SERIAL
    assert stick["vendorName"] and stick["productName"]
    assert isinstance(stick["bus"], int) and isinstance(stick["device"], int)
    assert stick["portPath"] and stick["portPath"].startswith(f"{stick['bus']}-")
    twins = find_devices(agent, TWIN)
    assert len(twins) == 2
    assert len({t["portPath"] for t in twins}) == 2, "identical devices told apart by their ports"


def test_whitelist_decides_allowed(agent):
    assert the_device(agent, STICK)["allowed"] is True
    assert the_device(agent, USB_SERIAL)["allowed"] is False
    hubs = [d for d in inventory(agent) if d["name"].startswith("usb_usb")]
    assert hubs and not any(h["allowed"] for h in hubs)


def test_e1000e_alone_in_its_iommu_group(agent):
    nic = the_device(agent, E1000E)
    assert nic["capability"] == "pci"
    assert nic["driver"] == "e1000e"
    assert nic["allowed"] is True
    assert isinstance(nic["iommuGroup"], int)
    group = [d for d in inventory(agent) if d["capability"] == "pci" and d["iommuGroup"] == nic["iommuGroup"]]
    assert [d["name"] for d in group] == [nic["name"]]
    assert nic["pciAddress"] and nic["name"] == "pci_" + nic["pciAddress"].replace(":", "_").replace(".", "_")
