"""VDSM address dicts <-> libvirt `<address>` elements.

A dict is {"type": "pci", "domain": "0x0000", "bus": "0x00", "slot": "0x03", "function": "0x0"} (or
usb bus/port, drive controller/bus/target/unit, ...): every attribute as a string, as libvirt writes
it. Reading is generic (all attributes); writing puts `type` and the known attributes of that type
first, in libvirt's order, then any others as given.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lxml import etree

from vdsm_plugin.domxml.base import invalid, make

TAG = "address"

# Attribute order of each address type, as libvirt writes it.
ATTRS: dict[str, tuple[str, ...]] = {
    "pci": ("domain", "bus", "slot", "function", "multifunction"),
    "usb": ("bus", "port"),
    "drive": ("controller", "bus", "target", "unit"),
    "virtio-serial": ("controller", "bus", "port"),
    "ccid": ("controller", "slot"),
    "isa": ("iobase", "irq"),
}

# A dict without "type" is recognised by an attribute only that type has.
_INFER = (("slot", "pci"), ("port", "usb"))


def address_type(addr: Mapping[str, Any]) -> str:
    if addr.get("type"):
        return str(addr["type"])
    for key, kind in _INFER:
        if key in addr:
            return kind
    raise invalid(f"cannot tell the type of address {dict(addr)!r}", field="address")


def ordered(addr: Mapping[str, Any], kind: str | None) -> dict[str, Any]:
    """The attributes in libvirt's order (`type` first when `kind` is given)."""
    known = ATTRS.get(kind or "", ())
    out: dict[str, Any] = {"type": kind} if kind else {}
    out.update((k, addr[k]) for k in known if addr.get(k) is not None)
    out.update((k, v) for k, v in addr.items() if k != "type" and k not in known and v is not None)
    return out


def to_element(addr: Mapping[str, Any], *, typed: bool = True) -> etree._Element:
    """`<address>` from a dict. `typed=False` leaves out the type attribute, as inside a hostdev's
    `<source>`, where the address kind follows from the hostdev type."""
    kind = address_type(addr) if typed else None
    return make(TAG, ordered(addr, kind))


def to_dict(el: etree._Element) -> dict[str, str]:
    """All attributes of an `<address>` element, `type` first."""
    attrs: dict[str, str] = dict(el.attrib)  # type: ignore[arg-type]  # lxml-stubs: _Attrib is no Mapping
    kind = attrs.pop("type", None)
    return ordered(attrs, kind) if kind else dict(attrs)


def read(device: etree._Element) -> dict[str, str] | None:
    """The guest address of a device element (its direct `<address>` child), or None."""
    el = device.find(TAG)
    return None if el is None else to_dict(el)


def strip(device: etree._Element) -> etree._Element:
    """Remove the device's guest address so libvirt picks one; its `<source>` address stays."""
    for el in device.findall(TAG):
        device.remove(el)
    return device
