"""Device dicts (schema shape) for every builder branch, shared by the golden and round-trip tests."""
from __future__ import annotations

from typing import Any

# bus 0 slot 7 exists on pc and q35 alike
PCI_GUEST = {"type": "pci", "domain": "0x0000", "bus": "0x00", "slot": "0x07", "function": "0x0"}
VF = {"domain": "0x0000", "bus": "0x3b", "slot": "0x02", "function": "0x1"}


def _nic(device: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"type": "interface", "device": device, "alias": f"ua-nic{n}", "macAddr": f"52:54:00:ab:00:0{n}",
            "nicModel": "pv", **extra}


# name -> (device dict, resolved_source); the golden file is golden/<name>.xml
DEVICES: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
    "nic_bridge": (_nic("bridge", 1, network="pbbr0", address=PCI_GUEST, bootOrder=2, linkActive=True,
                        promisc="pbbr0", specParams={"vlan": 100, "mtu": 9000}), None),
    "nic_network": (_nic("network", 2, network="default", nicModel="e1000e", linkActive=False), None),
    "nic_vnlink": (_nic("vnlink", 3, network="vn-net", specParams={"portProfile": "gold-profile"}), None),
    "nic_bridgeless": (_nic("bridgeless", 4, network="pbtap0", nicModel="rtl8139"), None),
    "nic_user": (_nic("user", 5), None),
    "nic_sriov": (_nic("sriov", 6, specParams={"hostdevAddress": VF, "vlan": 42}), None),
    "hostdev_usb_resolved": ({"type": "hostdev", "device": "usb", "alias": "ua-usb1",
                              "source": {"portPath": "1-1.2"}, "startupPolicy": "optional",
                              "address": {"type": "usb", "bus": "0", "port": "1"}},
                             {"vendorId": "046d", "productId": "c52b", "bus": 1, "device": 3}),
    "hostdev_usb_vendor_product": ({"type": "hostdev", "device": "usb", "alias": "ua-usb2",
                                    "source": {"vendor": "0x046D", "product": "c52b"}}, None),
    "hostdev_usb_bus_device": ({"type": "hostdev", "device": "usb", "alias": "ua-usb3",
                                "source": {"bus": 2, "device": 7}, "bootOrder": 3}, None),
    "hostdev_pci": ({"type": "hostdev", "device": "pci", "alias": "ua-pci1", "source": {"nodeDev": "pci_0000_3b_00_0"},
                     "address": {"type": "pci", "domain": "0x0000", "bus": "0x04", "slot": "0x00",
                                 "function": "0x0"}},  # the last of q35's four root ports
                    {"domain": "0x0000", "bus": "0x3b", "slot": "0x00", "function": "0x0"}),
    "hostdev_pci_unmanaged": ({"type": "hostdev", "device": "pci", "alias": "ua-pci2", "managed": False,
                               "source": {"domain": "0x0000", "bus": "0x3c", "slot": "0x00", "function": "0x1"}},
                              None),
    "redirdev_spicevmc": ({"type": "redirdev", "device": "spicevmc", "alias": "ua-redir1"}, None),
    "redirdev_tcp": ({"type": "redirdev", "device": "tcp", "alias": "ua-redir2", "host": "192.0.2.10",
                      "port": 4000, "address": {"type": "usb", "bus": "0", "port": "2"}}, None),
    "controller_usb": ({"type": "controller", "device": "usb", "model": "ich9-ehci1", "index": 1,
                        "alias": "ua-ctl1",
                        "address": {"type": "pci", "domain": "0x0000", "bus": "0x00", "slot": "0x1d",
                                    "function": "0x7"}}, None),
    "controller_usb_companion": ({"type": "controller", "device": "usb", "model": "ich9-uhci2", "index": 1,
                                  "alias": "ua-ctl3", "master": {"startport": 2}}, None),
    "controller_usb_xhci": ({"type": "controller", "device": "usb", "model": "qemu-xhci", "index": 2,
                             "alias": "ua-ctl2", "ports": 8}, None),
}

VM_ID = "6f1c2a3e-7b1d-4c55-9a0e-2d4b7c9e1f00"

VM_PC: dict[str, Any] = {
    "name": "pb-pc", "memSize": 256, "vcpus": 1, "machine": "pc", "graphics": "vnc",
    "kernel": "/var/lib/plugboard/guest/vmlinuz", "initrd": "/var/lib/plugboard/guest/initrd.gz",
    "cmdline": "console=ttyS0 quiet panic=-1 rdinit=/init", "serialLog": "/var/log/plugboard/pb-pc.serial",
    "osType": "other_linux", "customProperties": {"sap_agent": "true", "viodiskcache": "writeback"},
    "pciePorts": 8,  # ignored on pc
    "devices": [DEVICES["nic_bridge"][0], DEVICES["nic_user"][0], DEVICES["redirdev_tcp"][0],
                DEVICES["hostdev_usb_vendor_product"][0], DEVICES["hostdev_pci_unmanaged"][0]],
}

VM_Q35: dict[str, Any] = {
    "name": "pb-q35", "memSize": 512, "vcpus": 2, "machine": "q35", "graphics": "spice",
    "devices": [DEVICES["controller_usb_xhci"][0], DEVICES["nic_network"][0], DEVICES["redirdev_spicevmc"][0],
                DEVICES["hostdev_usb_resolved"][0], DEVICES["hostdev_pci"][0]],
}
VM_Q35_RESOLVED = {"ua-usb1": DEVICES["hostdev_usb_resolved"][1], "ua-pci1": DEVICES["hostdev_pci"][1]}

VM_MINIMAL: dict[str, Any] = {"name": "pb-min", "memSize": 128, "vcpus": 1, "machine": "q35", "pciePorts": 0}
