"""Config-only attach and detach of both kinds on a stopped L2: the persistent definition changes,
the host's devices do not move."""
from __future__ import annotations

from tests.testhost.conftest import E1000E, STICK, the_device


def test_config_only_attach_and_detach(agent, l1, idle_vm):
    vm_id = idle_vm("l2-stopped", define=True)
    nic, stick = the_device(agent, E1000E), the_device(agent, STICK)
    usb = agent.call("VM.hotplugHostdev", {"vmId": vm_id, "hostdev": {
        "type": "hostdev", "device": "usb", "source": {"vendor": STICK[0], "product": STICK[1]}}})
    pci = agent.call("VM.hotplugHostdev", {"vmId": vm_id, "hostdev": {
        "type": "hostdev", "device": "pci", "source": {"nodeDev": nic["name"]}}})
    assert (usb["nodeDev"], pci["nodeDev"]) == (stick["name"], nic["name"])
    xml = l1.hostdev_xml(vm_id, inactive=True)
    assert f"<alias name='{usb['alias']}'/>" in xml and f"<alias name='{pci['alias']}'/>" in xml
    assert agent.call("VM.getDevices", {"vmId": vm_id})["status"] == "down"
    assert l1.pci_driver(nic["pciAddress"]) == "e1000e"
    assert l1.usb_drivers(stick["portPath"]) == {"usb-storage"}

    for alias in (usb["alias"], pci["alias"]):
        gone = agent.call("VM.hotunplugHostdev", {"vmId": vm_id, "hostdev": {"alias": alias}})
        assert gone["status"] == "removed"
    assert "<hostdev" not in l1.hostdev_xml(vm_id, inactive=True)
