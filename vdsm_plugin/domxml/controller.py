"""`<controller>`: USB controllers (cold-plug only: QEMU cannot hot-plug them), and back.

Companion controllers (ich9-uhciN sharing an index with an ich9-ehci1 through `<master startport>`,
oVirt's layout) are requests of their own with `master`; only they may share an index.

QEMU's ich9-usb-ehci1 is function 7 of ICH9's USB slot, behind its UHCI companions at functions 0-2.
libvirt puts it at function 7 of a slot of its own even when it has no companion, and a guest never
looks at a slot whose function 0 is empty: such a controller is invisible to the guest (seen with the
test guest on pc and q35, libvirt 9.0). So a controller of FUNCTION7_MODELS without an address and
without companions gets function 0 of a free slot of bus 0 (see `function0_address`), taken from the
top because libvirt fills the bus from the bottom.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lxml import etree

from vdsm_plugin.domxml import address, common
from vdsm_plugin.domxml.base import invalid, make, to_int

TAG = "controller"
USB = "usb"
# schema key -> <controller> attribute (integers are read back as int)
ATTRS = {"index": "index", "model": "model", "ports": "ports"}
INT_KEYS = ("index", "ports")
# Only these models take a `ports` count (libvirt refuses it on the others when the VM starts).
MODELS_WITH_PORTS = ("qemu-xhci", "nec-xhci")
# Models libvirt places at function 7 (see above), and the bus-0 slots they may get instead, from the
# top (q35 keeps 0x1f for the ICH9 LPC, SATA and SMBus functions).
FUNCTION7_MODELS = ("ich9-ehci1",)
COMPANION_MODELS = ("ich9-uhci1", "ich9-uhci2", "ich9-uhci3")
MASTER = "master"
FUNCTION0_SLOTS = range(0x1d, 0x02, -1)


def build(dev: Mapping[str, Any], resolved_source: Mapping[str, Any] | None = None) -> etree._Element:
    if dev.get("device") != USB:
        raise invalid(f"only USB controllers are supported, not {dev.get('device')!r}", field="device")
    if dev.get("index") is None:
        raise invalid("a controller needs an index", field="index")
    if dev.get("ports") is not None and dev.get("model") not in MODELS_WITH_PORTS:
        raise invalid(f"a {dev.get('model')} controller has a fixed number of ports; only "
                      f"{', '.join(MODELS_WITH_PORTS)} take `ports`", field="ports")
    master = dev.get("master")
    if master is not None and dev.get("model") not in COMPANION_MODELS:
        raise invalid(f"only {', '.join(COMPANION_MODELS)} can be companions", field="master")
    return make(TAG, {"type": USB, **{attr: dev.get(key) for key, attr in ATTRS.items()}},
                make(MASTER, {"startport": master["startport"]}) if master is not None else None,
                *common.tail(dev))


def read(el: etree._Element) -> dict[str, Any]:
    out = common.base_dict(el, el.get("type") or TAG)
    for key, attr in ATTRS.items():
        value = el.get(attr)
        if value is not None:
            out[key] = to_int(value) if key in INT_KEYS else value
    master = el.find(MASTER)
    if master is not None and to_int(master.get("startport")) is not None:
        out["master"] = {"startport": to_int(master.get("startport"))}
    return out


def reported(el: etree._Element) -> bool:
    """Only USB controllers are devices the agent reports; PCI, SATA, ... are the machine's."""
    return el.get("type") == USB


def used_indexes(dom: etree._Element, ctype: str = USB) -> set[int]:
    """The indexes taken by controllers of type `ctype` (a companion shares its master's)."""
    return {i for el in dom.iterfind(f"devices/{TAG}")
            if el.get("type") == ctype and el.find(MASTER) is None and (i := to_int(el.get("index"))) is not None}


def _bus0_slots(devices: etree._Element) -> set[int]:
    """The slots of PCI bus 0 that the devices' guest addresses take."""
    used = set()
    for el in devices.iterfind(f"*/{address.TAG}[@type='pci']"):
        if to_int(el.get("domain") or "0") == 0 and to_int(el.get("bus") or "0") == 0:
            slot = to_int(el.get("slot"))
            if slot is not None:
                used.add(slot)
    return used


def function0_address(dev: Mapping[str, Any], devices: etree._Element,
                      own: etree._Element | None = None) -> dict[str, str] | None:
    """For a USB controller request of FUNCTION7_MODELS with no address and no companion (another
    USB controller of its index) among `devices` (a domain's `<devices>`; `own` is the request's
    element when it is already there): the guest address it should have, function 0 of the highest
    free slot of bus 0. None for every other request."""
    if dev.get("type") != TAG or dev.get("model") not in FUNCTION7_MODELS or dev.get("address") \
            or devices is None:
        return None
    index = str(dev.get("index"))
    if any(el is not own and el.get("index") == index for el in devices.iterfind(f"{TAG}[@type='{USB}']")):
        return None
    used = _bus0_slots(devices)
    slot = next((s for s in FUNCTION0_SLOTS if s not in used), None)
    if slot is None:
        return None  # a full bus: libvirt's own placement (and its error) then
    return {"type": "pci", "domain": "0x0000", "bus": "0x00", "slot": f"0x{slot:02x}", "function": "0x0"}
