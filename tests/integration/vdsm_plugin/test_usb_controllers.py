"""USB controllers cold-plugged into a stopped VM are there when it starts: the test guest reports
the USB host controllers on its PCI buses (PB-USBHC, read from the PCI class codes in sysfs)."""
from __future__ import annotations

import uuid
from collections import Counter

from tests.integration.guest import guest_usb_controllers, wait_for_serial
from tests.integration.vdsm_plugin.conftest import destroy_quietly

# QEMU's PCI ids of the controllers
PIIX3_UHCI, ICH9_EHCI1, NEC_XHCI = ("8086", "7020"), ("8086", "293a"), ("1033", "0194")


def controller(alias, index, model):
    return {"type": "controller", "device": "usb", "model": model, "index": index, "alias": alias}


def test_guest_sees_the_usb_controllers_it_was_started_with(rpc, guest, tmp_path):
    vm_id = str(uuid.uuid4())
    serial = tmp_path / "console.log"
    try:
        rpc("VM.define", vmId=vm_id, params={
            "name": f"pb-usbhc-{vm_id[:8]}", "memSize": 256, "vcpus": 1, "machine": "pc",
            "kernel": str(guest.kernel), "initrd": str(guest.initrd), "cmdline": guest.cmdline,
            "serialLog": str(serial)})
        rpc("VM.addController", vmId=vm_id, controller=controller("ua-ehci", 1, "ich9-ehci1"))
        rpc("VM.addController", vmId=vm_id, controller=controller("ua-xhci", 2, "nec-xhci"))
        assert rpc("VM.start", vmId=vm_id)["status"] == "up"
        wait_for_serial(serial, r"^PB-USBHC:", timeout=90)
        hcs = guest_usb_controllers(serial)
        assert Counter(h["kind"] for h in hcs.values()) == {"uhci": 1, "ehci": 1, "xhci": 1}, hcs
        assert sorted((h["vendor"], h["device"]) for h in hcs.values()) == sorted([PIIX3_UHCI, ICH9_EHCI1, NEC_XHCI])
    finally:
        destroy_quietly(rpc, vm_id)
