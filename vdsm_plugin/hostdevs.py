"""Host-device discovery: libvirt node-device XML -> the items of Host.hostdevListByCaps, and the
resolution of a request's usbSource / pciSource to the one device it designates.

Pure: this module takes node-device XML strings (what virNodeDevice.XMLDesc returns) and plain dicts;
it never talks to libvirt.

USB identity (see the USB passthrough design): vendor/product ids do not tell two identical sticks
apart, and the device number changes each time a device is re-plugged. The port path ("1-4.2": bus 1,
root port 4, hub port 2), read from the device's sysfs path, stays the same as long as the device sits
in the same physical port, so a request by port path is resolved to the current bus/device at attach
time.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any, Callable, Iterable, Mapping

from lxml import etree

from vdsm_plugin.errors import AgentError
from vdsm_plugin.whitelist import Whitelist

log = logging.getLogger(__name__)

CAPABILITIES = ("usb_device", "pci")
FIELDS = ("name", "capability", "vendorId", "productId", "vendorName", "productName", "bus", "device",
          "portPath", "serial", "pciAddress", "iommuGroup", "driver", "parent", "allowed", "attachedTo")

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)
_HEX = re.compile(r"^(0x)?([0-9a-f]{1,4})\Z", re.IGNORECASE)
_PORT_PATH = re.compile(r"^[0-9]+-[0-9]+(\.[0-9]+)*\Z")
_NAME_PORT_PATH = re.compile(r"^usb_([0-9]+)_([0-9]+(?:_[0-9]+)*)\Z")
SYSFS_DEVICES = "/sys/devices/"
MAX_SERIAL = 126    # a USB string descriptor holds at most 126 UTF-16 characters
_PCI_ADDRESS = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])\Z")


# -- small normalisers -----------------------------------------------------------------------------
def hexid(value: Any) -> str | None:
    """"0x136B" / "136b" / 0x136b -> "136b"; None or malformed -> None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return f"{value:04x}" if 0 <= value <= 0xFFFF else None
    m = _HEX.match(str(value).strip())
    return m.group(2).lower().zfill(4) if m else None


def _number(value: Any) -> int | None:
    """A decimal or 0x-prefixed number (as libvirt and the schema write them); None if absent."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        return None


def pci_address(domain: Any, bus: Any, slot: Any, function: Any) -> str | None:
    """Numbers (ints, "0x02", "2") -> "0000:02:00.0"; None when a part is missing or malformed."""
    parts = [n for v in (domain, bus, slot, function) if (n := _number(v)) is not None]
    if len(parts) != 4:
        return None
    return "{:04x}:{:02x}:{:02x}.{:x}".format(*parts)


def port_path_from_sysfs(path: str | None) -> str | None:
    """/sys/devices/pci0000:00/0000:00:14.0/usb1/1-4/1-4.2 -> "1-4.2". A root hub (".../usb1") sits on no
    port, and an interface ("1-4.2:1.0") is not a device: both -> None."""
    if not path:
        return None
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return last if _PORT_PATH.match(last) else None


def _port_path_from_name(name: str) -> str | None:
    """libvirt names a USB device after its sysfs name: usb_1_4_2 <- "1-4.2" (the fallback when the
    node-device XML carries no <path>)."""
    m = _NAME_PORT_PATH.match(name)
    if not m:
        return None
    return f"{m.group(1)}-{m.group(2).replace('_', '.')}"


def is_root_hub(dev: Mapping[str, Any]) -> bool:
    """A USB root hub is the host controller's own (virtual) device, e.g. usb_usb1: never passed through."""
    return dev.get("capability") == "usb_device" and (
        str(dev.get("name", "")).startswith("usb_usb") or (dev.get("device") == 1 and not dev.get("portPath")))


# -- parsing -----------------------------------------------------------------------------------------
def _text(elem: etree._Element | None, path: str) -> str | None:
    if elem is None:
        return None
    found = elem.find(path)
    if found is None or found.text is None:
        return None
    text = found.text.strip()
    return text or None


def _id_and_name(cap: etree._Element, tag: str, where: str) -> tuple[str, str | None]:
    elem = cap.find(tag)
    value = hexid(elem.get("id")) if elem is not None else None
    if elem is None or value is None:
        raise ValueError(f"node device {where}: missing or malformed <{tag} id=...>")
    name = (elem.text or "").strip() or None
    return value, name


def sysfs_serial(path: str) -> str | None:
    """The serial number a USB device reported (its iSerialNumber string), from its sysfs directory:
    libvirt's usb_device capability does not carry it. None when the device has none."""
    if not path.startswith(SYSFS_DEVICES) or "/../" in path:
        return None
    try:
        with open(os.path.join(path, "serial"), encoding="utf-8", errors="replace") as f:
            text = f.read(MAX_SERIAL + 1).strip()
    except OSError:
        return None
    return text[:MAX_SERIAL] or None


def parse_nodedev(xml: str | bytes, serial_of: Callable[[str], str | None] | None = None) -> dict[str, Any] | None:
    """One libvirt node-device XML document -> a Host.hostdevListByCaps item, or None when the device is
    neither a USB device (capability usb_device) nor a PCI device. `allowed` is False and `attachedTo`
    None here: `inventory` fills them in. A USB device's serial is the XML's, else what `serial_of` reads
    at the device's sysfs path (see sysfs_serial). Raises ValueError on XML that is malformed or lacks
    the ids."""
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    try:
        root = etree.fromstring(xml, _PARSER)
    except etree.XMLSyntaxError as e:
        raise ValueError(f"malformed node-device XML: {e}") from None
    if root.tag != "device":
        raise ValueError(f"not a node-device document (root <{root.tag}>)")
    name = _text(root, "name")
    if not name:
        raise ValueError("node device without a <name>")
    cap = next((c for c in root.findall("capability") if c.get("type") in CAPABILITIES), None)
    if cap is None:
        return None
    capability = cap.get("type")
    vendor_id, vendor_name = _id_and_name(cap, "vendor", name)
    product_id, product_name = _id_and_name(cap, "product", name)
    dev: dict[str, Any] = dict.fromkeys(FIELDS)
    dev.update(name=name, capability=capability, vendorId=vendor_id, productId=product_id,
               vendorName=vendor_name, productName=product_name,
               driver=_text(root, "driver/name"), parent=_text(root, "parent"),
               serial=_text(cap, "serial"), allowed=False, attachedTo=None)
    if capability == "usb_device":
        dev["bus"] = _number(_text(cap, "bus"))
        dev["device"] = _number(_text(cap, "device"))
        path = _text(root, "path")
        dev["portPath"] = port_path_from_sysfs(path) if path else _port_path_from_name(name)
        if dev["serial"] is None and path and serial_of is not None:
            dev["serial"] = serial_of(path)
    else:
        dev["pciAddress"] = pci_address(_text(cap, "domain"), _text(cap, "bus"), _text(cap, "slot"),
                                        _text(cap, "function"))
        group = cap.find("iommuGroup")
        dev["iommuGroup"] = _number(group.get("number")) if group is not None else None
    return dev


def inventory(nodedev_xmls: Iterable[str], whitelist: Whitelist,
              attached: Mapping[str, str] | None = None,
              serial_of: Callable[[str], str | None] | None = None) -> list[dict[str, Any]]:
    """The host's USB and PCI devices, sorted by name, each with whether the whitelist allows it (a USB
    root hub never is) and the uuid of the VM that holds it (`attached`: node-device name -> VM uuid).
    `serial_of` reads a USB device's serial at its sysfs path (sysfs_serial on a real host).
    A document that cannot be parsed is logged and left out rather than hiding every other device."""
    attached = attached or {}
    devices = []
    for xml in nodedev_xmls:
        try:
            dev = parse_nodedev(xml, serial_of)
        except ValueError as e:
            log.warning("skipping a node device: %s", e)
            continue
        if dev is None:
            continue
        dev["allowed"] = whitelist.allows(dev) and not is_root_hub(dev)
        dev["attachedTo"] = attached.get(dev["name"])
        devices.append(dev)
    return sorted(devices, key=lambda d: d["name"])


# -- resolving a request -----------------------------------------------------------------------------
def _describe(source: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in source.items())


def _one(matches: list[dict[str, Any]], what: str) -> dict[str, Any]:
    if not matches:
        raise AgentError("hostdevMissing", f"no host device matches {what}")
    if len(matches) > 1:
        names = [d["name"] for d in matches]
        raise AgentError("hostdevAmbiguous", f"{len(matches)} host devices match {what}: {', '.join(names)}",
                         candidates=names)
    return matches[0]


def resolve_usb(source: Mapping[str, Any], devices: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The one inventory USB device a schema `usbSource` designates: by nodeDev name, by portPath (the
    device currently in that port, with its current bus/device), by serial (two devices reporting the
    same one are ambiguous), by bus+device (and, when given too, vendor+product must agree: a device
    re-plugged since may now have that number), or by vendor+product (must match exactly one device).
    Raises AgentError hostdevMissing / hostdevAmbiguous (with `candidates`) / invalidParams."""
    usb = [dict(d) for d in devices if d.get("capability") == "usb_device"]
    what = _describe(source)
    if source.get("nodeDev"):
        return _one([d for d in usb if d["name"] == source["nodeDev"]], what)
    if source.get("portPath"):
        return _one([d for d in usb if d.get("portPath") == str(source["portPath"]).strip()], what)
    if source.get("serial"):
        return _one([d for d in usb if d.get("serial") == source["serial"]], what)
    vendor, product = source.get("vendor"), source.get("product")
    if (vendor is None) != (product is None):
        raise AgentError("invalidParams", f"usb source {what}: give vendor and product together")
    if vendor is not None and (hexid(vendor) is None or hexid(product) is None):
        raise AgentError("invalidParams", f"usb source {what}: malformed vendor or product id")
    want_ids = (hexid(vendor), hexid(product)) if vendor is not None else None
    if source.get("bus") is not None or source.get("device") is not None:
        bus, device = _number(source.get("bus")), _number(source.get("device"))
        if bus is None or device is None:
            raise AgentError("invalidParams", f"usb source {what}: give bus and device together, as numbers")
        return _one([d for d in usb if (d.get("bus"), d.get("device")) == (bus, device)
                     and (want_ids is None or (d["vendorId"], d["productId"]) == want_ids)], what)
    if want_ids is not None:
        return _one([d for d in usb if (d["vendorId"], d["productId"]) == want_ids], what)
    raise AgentError("invalidParams", f"usb source {what or '{}'} names no device: give vendor+product, "
                     "bus+device, portPath, nodeDev or serial")


def resolve_pci(source: Mapping[str, Any], devices: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The one inventory PCI device a schema `pciSource` designates: by nodeDev name or by host address
    (domain/bus/slot/function). Raises AgentError hostdevMissing / invalidParams."""
    pci = [dict(d) for d in devices if d.get("capability") == "pci"]
    what = _describe(source)
    if source.get("nodeDev"):
        return _one([d for d in pci if d["name"] == source["nodeDev"]], what)
    address = pci_address(source.get("domain"), source.get("bus"), source.get("slot"), source.get("function"))
    if address is None:
        raise AgentError("invalidParams", f"pci source {what or '{}'}: give domain, bus, slot and function, "
                         "or nodeDev")
    return _one([d for d in pci if (d.get("pciAddress") or "").lower() == address], what)


# -- matching a domain's <hostdev> to the inventory ----------------------------------------------------
def usb_hostdev_key(dev: Mapping[str, Any]) -> tuple[str, int | None, int | None]:
    """An inventory USB device's identity as a domain's hostdev names it once running: ("usb", bus, device)."""
    return ("usb", dev.get("bus"), dev.get("device"))


def pci_hostdev_key(dev: Mapping[str, Any]) -> tuple[str, str | None]:
    """An inventory PCI device's identity: ("pci", "0000:02:00.0")."""
    return ("pci", (dev.get("pciAddress") or "").lower() or None)


def hostdev_key(dev: Mapping[str, Any]) -> tuple[Any, ...]:
    return pci_hostdev_key(dev) if dev.get("capability") == "pci" else usb_hostdev_key(dev)


def source_key(kind: str, source: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """A domain hostdev's source (as the domain XML reader reports it) -> the key of `hostdev_key`, or None
    when the source does not name a concrete device (a USB source by vendor/product only).
    `kind` is the hostdev's type: "usb" or "pci"."""
    if kind == "pci":
        address = pci_address(source.get("domain"), source.get("bus"), source.get("slot"), source.get("function"))
        return ("pci", address) if address else None
    bus, device = _number(source.get("bus")), _number(source.get("device"))
    return ("usb", bus, device) if bus is not None and device is not None else None


def source_matches(kind: str, source: Mapping[str, Any], dev: Mapping[str, Any]) -> bool:
    """Does a domain hostdev of type `kind` with this source designate this inventory device? USB: by
    bus/device when the source has them (a running domain's live XML does), else by vendor/product."""
    if (kind == "pci") != (dev.get("capability") == "pci"):
        return False
    key = source_key(kind, source)
    if key is not None:
        return key == hostdev_key(dev)
    if kind == "pci":
        return False
    vendor = hexid(source.get("vendor", source.get("vendorId")))
    product = hexid(source.get("product", source.get("productId")))
    return vendor is not None and (vendor, product) == (dev.get("vendorId"), dev.get("productId"))


def attached_map(held: Iterable[tuple[str, str, Mapping[str, Any]]],
                 devices: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """node-device name -> VM uuid, from (vm uuid, hostdev type "usb"/"pci", source) triples read from the
    running domains. A USB source by vendor/product only is counted when it matches exactly one device."""
    devices = list(devices)
    out: dict[str, str] = {}
    for vm_id, kind, source in held:
        matches = [d for d in devices if source_matches(kind, source, d)]
        if len(matches) == 1:
            out.setdefault(matches[0]["name"], vm_id)
    return out
