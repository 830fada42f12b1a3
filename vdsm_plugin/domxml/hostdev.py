"""`<hostdev mode='subsystem'>` for USB and PCI passthrough, and back.

The caller resolves which host device a request designates and passes it as `resolved_source`:
{vendorId, productId, bus, device} for USB (all four are written, so libvirt takes exactly that
device), {domain, bus, slot, function} for PCI. Without it, the request's own `source` is used when it
names the device directly (USB vendor+product and/or bus+device, PCI address); a port path or a
node-device name must be resolved by the caller first.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree

from vdsm_plugin.domxml import address, common
from vdsm_plugin.domxml.base import dec, ensure_path, get_attr, hexid, invalid, make, set_attrs

TAG = "hostdev"
MODE = "subsystem"
SOURCE = "source"
STARTUP_POLICY = "startupPolicy"   # attribute of <source>, USB only
YESNO = {True: "yes", False: "no"}

# USB: source key -> (element under <source>, attribute, how the value is written)
USB_SOURCE: dict[str, tuple[str, str, Callable[[Any], str]]] = {
    "vendor": ("vendor", "id", hexid),
    "product": ("product", "id", hexid),
    "bus": ("address", "bus", dec),
    "device": ("address", "device", dec),
}
# Key names of a resolved USB device (the host inventory's) -> USB_SOURCE keys.
USB_RESOLVED = {"vendorId": "vendor", "productId": "product", "bus": "bus", "device": "device"}
# Each pair on its own names one USB device.
USB_PAIRS = (("vendor", "product"), ("bus", "device"))

PCI_SOURCE = address.ATTRS["pci"][:4]   # domain, bus, slot, function


def _usb_source(src: Mapping[str, Any]) -> etree._Element:
    if any(src.get(a) is not None and src.get(b) is None or src.get(a) is None and src.get(b) is not None
           for a, b in USB_PAIRS):
        raise invalid("a USB source needs vendor with product and bus with device", field="source")
    if not any(src.get(a) is not None for a, _ in USB_PAIRS):
        raise invalid("a USB source given by port path or node device must be resolved to "
                      "vendor/product/bus/device first", field="source")
    el = make(SOURCE)
    for key, (path, attr, write) in USB_SOURCE.items():
        if src.get(key) is not None:
            set_attrs(ensure_path(el, path), {attr: write(src[key])})
    return el


def _pci_source(src: Mapping[str, Any]) -> etree._Element:
    missing = [k for k in PCI_SOURCE if not src.get(k)]
    if missing:
        raise invalid(f"a PCI source needs {', '.join(PCI_SOURCE)} (missing {', '.join(missing)}); "
                      "a node-device name must be resolved first", field="source")
    return make(SOURCE, None, address.to_element({k: src[k] for k in PCI_SOURCE}, typed=False))


def _read_usb(source: etree._Element) -> dict[str, str]:
    out = {}
    for key, (path, attr, _) in USB_SOURCE.items():
        value = get_attr(source, path, attr)
        if value is not None:
            out[key] = value
    return out


def _read_pci(source: etree._Element) -> dict[str, str]:
    el = source.find(address.TAG)
    return {} if el is None else address.to_dict(el)


@dataclass(frozen=True)
class Kind:
    managed: bool                     # default of <hostdev managed>
    startup_policy: bool              # may carry <source startupPolicy>
    resolved_keys: Mapping[str, str]  # resolved_source key -> source key
    build_source: Callable[[Mapping[str, Any]], etree._Element]
    read_source: Callable[[etree._Element], dict[str, str]]


KINDS: dict[str, Kind] = {
    "usb": Kind(False, True, USB_RESOLVED, _usb_source, _read_usb),
    "pci": Kind(True, False, {k: k for k in PCI_SOURCE}, _pci_source, _read_pci),
}


def build(dev: Mapping[str, Any], resolved_source: Mapping[str, Any] | None = None) -> etree._Element:
    try:
        kind = KINDS[dev["device"]]
    except KeyError:
        raise invalid(f"unknown host device kind {dev.get('device')!r}", field="device") from None
    if dev.get(STARTUP_POLICY) and not kind.startup_policy:
        raise invalid(f"startupPolicy applies to USB host devices only, not {dev['device']}",
                      field=STARTUP_POLICY)
    if resolved_source:
        src = {kind.resolved_keys[k]: v for k, v in resolved_source.items() if k in kind.resolved_keys}
    else:
        src = dict(dev.get("source") or {})
    source = kind.build_source(src)
    set_attrs(source, {STARTUP_POLICY: dev.get(STARTUP_POLICY)})
    managed = dev.get("managed", kind.managed)
    return make(TAG, {"mode": MODE, "type": dev["device"], "managed": YESNO[bool(managed)]},
                source, *common.tail(dev))


def read(el: etree._Element) -> dict[str, Any]:
    device = el.get("type") or TAG
    out = common.base_dict(el, device)
    kind = KINDS.get(device)
    source = el.find(SOURCE)
    if source is not None:
        out["source"] = kind.read_source(source) if kind else dict(source.attrib)
        if source.get(STARTUP_POLICY):
            out[STARTUP_POLICY] = source.get(STARTUP_POLICY)
    if el.get("managed") is not None:
        out["managed"] = el.get("managed") == YESNO[True]
    return out
