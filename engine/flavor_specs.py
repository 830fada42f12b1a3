"""A flavor's extra specs: what they may say, and the devices a VM created from the flavor gets.

Pure (no database, no web framework): the flavor commands validate with it, add_vm asks it for the
VM's device rows.

Extra specs are strings, as in Nova (numbers are accepted and kept as their text). Keys:

- ``usb_redirection_devices`` (the USB-redirection blueprint): a list of ``{"bus": "usb", "type":
  "spicevmc"}`` or ``{"bus": "usb", "type": "tcp", "host": ..., "port": ...[, "mode": "connect" |
  "bind"]}``, given as its JSON text (a list given as such is stored as its JSON text). One
  ``<redirdev>`` per entry.
- ``hw:usb_model`` (Nova): ``none`` | ``nec-xhci`` | ``qemu-xhci``: the VM's USB controller (index 0).
  ``none`` leaves the VM without USB, so it cannot go with redirection devices.
- ``hw:redirected_usb_ports`` (Nova): 0..15 spicevmc redirection devices. Nova's way and the
  blueprint's way of asking for redirection are not combined: a flavor says one or the other.
- ``usb_devices`` (the USB-passthrough blueprint): the USB host devices a VM of the flavor gets, as
  the JSON text of a list (a list given as such is stored as its JSON text). An entry is either
  ``{"id": 5}`` -- one device of the inventory (the blueprint's form; its host is where the VM runs)
  -- or ``{"vendor_id": "0781", "product_id": "5567", "count": 1}`` -- any ``count`` (default 1)
  free devices with these ids (4 hex digits each, an optional ``0x``), on whichever host has them.
  At most 8 devices in all; an id is asked for once. The scheduler places the VM where they are free
  (engine.commands.flavor_hostdevs).
- ``pci_passthrough:alias`` (Nova, seed 003): the PCI devices a VM of the flavor gets at each start,
  by alias, in Nova's syntax: ``"a1:2"`` or ``"a1:2,b1:1"`` (engine.pci_aliases). An alias the engine's
  configuration does not name is refused when the flavor is written (the callers pass the names).

Namespaces: a key that starts with ``hw:``, ``pci_passthrough:``, ``plugboard:`` or ``usb_`` is
Plugboard's to apply, so an unknown one is refused (a misspelt key would otherwise be silently
ignored). Any other key (``quota:...``, ``aggregate_instance_extra_specs:...``, ``trait:...``) is
kept as given and never interpreted: Nova lets operators store arbitrary specs for their own tools.

Every problem is reported, each as its own Reason naming the key (and the entry of a list).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from engine import pci_aliases, reasons as R, usb
from engine.errors import Reason

USB_REDIRECTION_DEVICES: Final = "usb_redirection_devices"
HW_USB_MODEL: Final = "hw:usb_model"
HW_REDIRECTED_USB_PORTS: Final = "hw:redirected_usb_ports"
USB_DEVICES: Final = "usb_devices"                      # USB host devices from a flavor
PCI_PASSTHROUGH_ALIAS: Final = "pci_passthrough:alias"  # PCI passthrough by alias

KNOWN_KEYS = (USB_REDIRECTION_DEVICES, HW_USB_MODEL, HW_REDIRECTED_USB_PORTS, USB_DEVICES,
              PCI_PASSTHROUGH_ALIAS)
#: Keys whose value is a JSON list (given as a list, stored as its text).
LIST_KEYS = (USB_REDIRECTION_DEVICES, USB_DEVICES)
#: Namespaces whose keys Plugboard applies: an unknown key in them is refused.
OWN_PREFIXES = ("hw:", "pci_passthrough:", "plugboard:", "usb_")

USB_MODELS = ("none", "nec-xhci", "qemu-xhci")
REDIRDEV_TYPES = ("spicevmc", "tcp")
REDIRDEV_MODES = ("connect", "bind")
REDIRDEV_FIELDS = ("bus", "type", "host", "port", "mode")
MAX_REDIRECTED_USB_PORTS = 15
MAX_REDIRECTION_DEVICES = 15
MAX_USB_DEVICES = 8
USB_BY_ID_FIELDS = ("id",)
USB_BY_IDS_FIELDS = ("vendor_id", "product_id", "count")
USB_ID_RE = re.compile(r"^(0x)?[0-9A-Fa-f]{4}\Z")
# Nova's key syntax. Values may be longer than Nova's 255 characters so that a JSON list of
# redirection devices fits.
KEY_RE = re.compile(r"^[A-Za-z0-9_.:\- ]{1,255}\Z")       # server metadata keys too
VALUE_MAX = 4096
# schema/verbs.yaml definitions/redirdev.
HOST_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,253}\Z")
PORTS = (1, 65535)

# ---- reasons -------------------------------------------------------------------------------------

SPEC_KEY_INVALID: Final = "SPEC_KEY_INVALID"
SPEC_KEY_UNKNOWN: Final = "SPEC_KEY_UNKNOWN"
SPEC_VALUE_INVALID: Final = "SPEC_VALUE_INVALID"
SPEC_CONFLICT: Final = "SPEC_CONFLICT"
SPEC_NEEDS_USB_CONTROLLER: Final = "SPEC_NEEDS_USB_CONTROLLER"


def key_invalid(key: Any) -> Reason:
    return Reason(SPEC_KEY_INVALID, f"Extra spec key {key!r} is not valid (1-255 letters, digits, '_', '-', "
                  "'.', ':' or spaces).", {"key": key})


def key_unknown(key: str) -> Reason:
    return Reason(SPEC_KEY_UNKNOWN, f"Extra spec {key} is not one Plugboard knows; the keys of its namespaces "
                  f"are {', '.join(KNOWN_KEYS)}.", {"key": key, "known": list(KNOWN_KEYS)})


def value_invalid(key: str, value: Any, rule: str, *, path: str | None = None) -> Reason:
    path = path or key
    return Reason(SPEC_VALUE_INVALID, f"Extra spec {path}={value!r}: {rule}.",
                  {"key": key, "path": path, "value": value, "rule": rule})


def conflict(key: str, other: str) -> Reason:
    return Reason(SPEC_CONFLICT, f"Extra specs {key} and {other} both ask for USB redirection devices; "
                  "a flavor says it one way.", {"key": key, "other": other})


def needs_usb_controller(key: str) -> Reason:
    what = "USB host devices" if key == USB_DEVICES else "USB redirection devices"
    return Reason(SPEC_NEEDS_USB_CONTROLLER, f"Extra spec {HW_USB_MODEL}=none leaves the VM without a USB "
                  f"controller, but {key} asks for {what}.", {"key": HW_USB_MODEL, "other": key})


# ---- parsing -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Redirdev:
    """One USB redirection device: spicevmc (the SPICE client's USB) or tcp (a usbredir server)."""

    type: str
    host: str | None = None
    port: int | None = None
    mode: str | None = None

    def spec_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.type == "tcp":
            params = {"host": self.host, "port": self.port}
            if self.mode:
                params["mode"] = self.mode
        return params


@dataclass(frozen=True)
class UsbRequest:
    """USB host devices a flavor asks for: one device of the inventory (`id`), or `count` free
    devices with these vendor/product ids (lower-case, 4 hex digits, no 0x)."""

    id: int | None = None
    vendor_id: str | None = None
    product_id: str | None = None
    count: int = 1

    def describe(self) -> str:
        if self.id is not None:
            return f"USB device {self.id}"
        return f"{self.count} USB device{'s' if self.count > 1 else ''} {self.vendor_id}:{self.product_id}"


@dataclass(frozen=True)
class Specs:
    """Extra specs as stored (strings) and what they mean."""

    stored: dict[str, str] = field(default_factory=dict)
    redirdevs: tuple[Redirdev, ...] = ()
    usb_model: str | None = None
    usb_devices: tuple[UsbRequest, ...] = ()
    pci_devices: tuple[pci_aliases.PciRequest, ...] = ()


def _text(key: str, value: Any, found: list[Reason]) -> str | None:
    """The stored text of a value: strings as given, numbers as their text, a redirection list as
    its JSON text."""
    if isinstance(value, bool) or value is None:
        found.append(value_invalid(key, value, "a string"))
        return None
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list) and key in LIST_KEYS:
        value = json.dumps(value)
    if not isinstance(value, str):
        found.append(value_invalid(key, value, "a string"))
        return None
    if len(value) > VALUE_MAX:
        found.append(value_invalid(key, value[:40] + "...", f"at most {VALUE_MAX} characters"))
        return None
    return value


def _redirdev(index: int, entry: Any, found: list[Reason]) -> Redirdev | None:
    key = USB_REDIRECTION_DEVICES
    where = f"{key}[{index}]"
    if not isinstance(entry, dict):
        found.append(value_invalid(key, entry, 'an object like {"bus": "usb", "type": "spicevmc"}', path=where))
        return None
    before = len(found)
    for name in entry:
        if name not in REDIRDEV_FIELDS:
            found.append(value_invalid(key, entry[name], f"unknown field; fields are {', '.join(REDIRDEV_FIELDS)}",
                                       path=f"{where}.{name}"))
    if "bus" in entry and entry["bus"] != "usb":
        found.append(value_invalid(key, entry["bus"], "usb (the only redirection bus)", path=f"{where}.bus"))
    kind = entry.get("type")
    if kind not in REDIRDEV_TYPES:
        found.append(value_invalid(key, kind, f"one of {', '.join(REDIRDEV_TYPES)}", path=f"{where}.type"))
    elif kind == "spicevmc":
        for name in ("host", "port", "mode"):
            if name in entry:
                found.append(value_invalid(key, entry[name], "only for a tcp device", path=f"{where}.{name}"))
    else:
        host, port, mode = entry.get("host"), entry.get("port"), entry.get("mode")
        if not isinstance(host, str) or not HOST_RE.match(host):
            found.append(value_invalid(key, host, "a host name or address", path=f"{where}.host"))
        if isinstance(port, bool) or not isinstance(port, int) or not PORTS[0] <= port <= PORTS[1]:
            found.append(value_invalid(key, port, f"a port number between {PORTS[0]} and {PORTS[1]}",
                                       path=f"{where}.port"))
        if mode is not None and mode not in REDIRDEV_MODES:
            found.append(value_invalid(key, mode, f"one of {', '.join(REDIRDEV_MODES)}", path=f"{where}.mode"))
    if len(found) > before:
        return None
    if kind == "tcp":
        return Redirdev("tcp", host=entry["host"], port=entry["port"], mode=entry.get("mode"))
    return Redirdev("spicevmc")


def _redirection_devices(text: str, found: list[Reason]) -> tuple[Redirdev, ...]:
    key = USB_REDIRECTION_DEVICES
    try:
        entries = json.loads(text)
    except ValueError:
        found.append(value_invalid(key, text, 'a JSON list like [{"bus": "usb", "type": "spicevmc"}]'))
        return ()
    if not isinstance(entries, list):
        found.append(value_invalid(key, text, 'a JSON list like [{"bus": "usb", "type": "spicevmc"}]'))
        return ()
    if len(entries) > MAX_REDIRECTION_DEVICES:
        found.append(value_invalid(key, f"{len(entries)} devices", f"at most {MAX_REDIRECTION_DEVICES} devices"))
        return ()
    parsed = [_redirdev(i, entry, found) for i, entry in enumerate(entries)]
    return tuple(d for d in parsed if d is not None)


def _hex_id(where: str, name: str, value: Any, found: list[Reason]) -> str | None:
    if not isinstance(value, str) or not USB_ID_RE.match(value):
        found.append(value_invalid(USB_DEVICES, value, "4 hex digits, e.g. \"0781\"", path=f"{where}.{name}"))
        return None
    return value[-4:].lower()


def _usb_request(index: int, entry: Any, found: list[Reason]) -> UsbRequest | None:
    key = USB_DEVICES
    where = f"{key}[{index}]"
    if not isinstance(entry, dict):
        found.append(value_invalid(key, entry, 'an object like {"id": 5} or {"vendor_id": "0781", "product_id": '
                                   '"5567", "count": 1}', path=where))
        return None
    before = len(found)
    by_id = "id" in entry
    fields = USB_BY_ID_FIELDS if by_id else USB_BY_IDS_FIELDS
    for name in entry:
        if name not in fields:
            rule = ("not with id: a device is asked for by its id or by vendor_id and product_id" if by_id and
                    name in USB_BY_IDS_FIELDS else f"unknown field; fields are {', '.join(fields)}")
            found.append(value_invalid(key, entry[name], rule, path=f"{where}.{name}"))
    if by_id:
        dev_id = entry["id"]
        if isinstance(dev_id, bool) or not isinstance(dev_id, int) or dev_id < 1:
            found.append(value_invalid(key, dev_id, "a host device id (a whole number from 1)", path=f"{where}.id"))
        return None if len(found) > before else UsbRequest(id=dev_id)
    vendor = _hex_id(where, "vendor_id", entry.get("vendor_id"), found)
    product = _hex_id(where, "product_id", entry.get("product_id"), found)
    count = entry.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_USB_DEVICES:
        found.append(value_invalid(key, count, f"a whole number between 1 and {MAX_USB_DEVICES}",
                                   path=f"{where}.count"))
    if len(found) > before:
        return None
    return UsbRequest(vendor_id=vendor, product_id=product, count=count)


def _usb_devices(text: str, found: list[Reason]) -> tuple[UsbRequest, ...]:
    key = USB_DEVICES
    rule = 'a JSON list like [{"id": 5}] or [{"vendor_id": "0781", "product_id": "5567", "count": 1}]'
    try:
        entries = json.loads(text)
    except ValueError:
        entries = None
    if not isinstance(entries, list):
        found.append(value_invalid(key, text, rule))
        return ()
    parsed = [_usb_request(i, entry, found) for i, entry in enumerate(entries)]
    requests = tuple(r for r in parsed if r is not None)
    ids = [r.id for r in requests if r.id is not None]
    for dev_id in sorted({i for i in ids if ids.count(i) > 1}):
        found.append(value_invalid(key, dev_id, "each device id once"))
    total = sum(r.count for r in requests)
    if total > MAX_USB_DEVICES:
        found.append(value_invalid(key, f"{total} devices", f"at most {MAX_USB_DEVICES} devices"))
    return requests if len(requests) == len(entries) else ()


def _port_count(text: str, found: list[Reason]) -> int | None:
    rule = f"a whole number between 0 and {MAX_REDIRECTED_USB_PORTS}"
    if not re.fullmatch(r"[0-9]{1,3}", text.strip()):
        found.append(value_invalid(HW_REDIRECTED_USB_PORTS, text, rule))
        return None
    count = int(text)
    if count > MAX_REDIRECTED_USB_PORTS:
        found.append(value_invalid(HW_REDIRECTED_USB_PORTS, text, rule))
        return None
    return count


def _pci_devices(text: str, known: Iterable[str] | None, found: list[Reason]) -> tuple[pci_aliases.PciRequest, ...]:
    requests, problems = pci_aliases.parse_request(text)
    for problem in problems:
        found.append(value_invalid(PCI_PASSTHROUGH_ALIAS, text, problem))
    names = sorted(set(known)) if known is not None else None
    unknown = [r.alias for r in requests if names is not None and r.alias not in names]
    found.extend(R.pci_alias_unknown(alias, names or []) for alias in unknown)
    return () if unknown else requests


def parse(specs: Mapping[str, Any] | None, *,
          pci_alias_names: Iterable[str] | None = None) -> tuple[Specs, list[Reason]]:
    """Every key checked; returns what the flavor stores and means, and every reason it cannot.
    `pci_alias_names`: the configured PCI aliases (None: the names a request uses are not checked)."""
    found: list[Reason] = []
    if specs is None:
        return Specs(), found
    if not isinstance(specs, Mapping):
        return Specs(), [value_invalid("extra_specs", specs, "an object of key/value pairs")]
    stored: dict[str, str] = {}
    for key, value in specs.items():
        if not isinstance(key, str) or not KEY_RE.match(key):
            found.append(key_invalid(key))
            continue
        if key not in KNOWN_KEYS and key.startswith(OWN_PREFIXES):
            found.append(key_unknown(key))
            continue
        text = _text(key, value, found)
        if text is not None:
            stored[key] = text

    redirdevs: tuple[Redirdev, ...] = ()
    usb_model = stored.get(HW_USB_MODEL)
    if usb_model is not None and usb_model not in USB_MODELS:
        found.append(value_invalid(HW_USB_MODEL, usb_model, f"one of {', '.join(USB_MODELS)}"))
        usb_model = None
    if USB_REDIRECTION_DEVICES in stored:
        redirdevs = _redirection_devices(stored[USB_REDIRECTION_DEVICES], found)
    if HW_REDIRECTED_USB_PORTS in stored:
        count = _port_count(stored[HW_REDIRECTED_USB_PORTS], found)
        if USB_REDIRECTION_DEVICES in stored:
            found.append(conflict(USB_REDIRECTION_DEVICES, HW_REDIRECTED_USB_PORTS))
        elif count:
            redirdevs = tuple(Redirdev("spicevmc") for _ in range(count))
    if usb_model == "none" and redirdevs:
        asked = USB_REDIRECTION_DEVICES if USB_REDIRECTION_DEVICES in stored else HW_REDIRECTED_USB_PORTS
        found.append(needs_usb_controller(asked))
    usb_devices = _usb_devices(stored[USB_DEVICES], found) if USB_DEVICES in stored else ()
    if usb_model == "none" and usb_devices:
        found.append(needs_usb_controller(USB_DEVICES))
    pci_devices = (_pci_devices(stored[PCI_PASSTHROUGH_ALIAS], pci_alias_names, found)
                   if PCI_PASSTHROUGH_ALIAS in stored else ())
    return Specs(stored=stored, redirdevs=redirdevs, usb_model=usb_model, usb_devices=usb_devices,
                 pci_devices=pci_devices), found


def normalize(specs: Mapping[str, Any] | None, *,
              pci_alias_names: Iterable[str] | None = None) -> tuple[dict[str, str], list[Reason]]:
    """The specs as the flavor stores them (strings), and every reason they cannot be stored."""
    parsed, found = parse(specs, pci_alias_names=pci_alias_names)
    return parsed.stored, found


def validate(specs: Mapping[str, Any] | None, *, pci_alias_names: Iterable[str] | None = None) -> list[Reason]:
    return parse(specs, pci_alias_names=pci_alias_names)[1]


def _valid(specs: Mapping[str, Any] | None) -> Specs:
    parsed, found = parse(specs)
    if found:
        raise ValueError("invalid extra specs: " + "; ".join(r.message for r in found))
    return parsed


def usb_requests(specs: Mapping[str, Any] | None) -> tuple[UsbRequest, ...]:
    """The USB host devices (valid) specs ask for. ValueError if the specs are invalid."""
    return _valid(specs).usb_devices


def pci_requests(specs: Mapping[str, Any] | None) -> tuple[pci_aliases.PciRequest, ...]:
    """The PCI devices (valid) specs ask for, by alias. ValueError if the specs are invalid."""
    return _valid(specs).pci_devices


def needs_spice(specs: Mapping[str, Any] | None) -> bool:
    """Whether a VM of these specs needs SPICE graphics: a spicevmc channel only exists with it."""
    return any(d.type == "spicevmc" for d in _valid(specs).redirdevs)


def devices_for(specs: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The device rows a VM created from a flavor with these (valid) specs gets: its USB controller,
    then one redirdev per redirection device. `spec_params` hold the agent's fields other than type,
    device, alias and address (schema/verbs.yaml `controller`, `redirdev`). An xHCI controller gets
    enough ports for the redirection devices (up to 15; every redirection device needs one).
    ValueError if the specs are invalid."""
    parsed = _valid(specs)
    rows: list[dict[str, Any]] = []
    if parsed.usb_model is not None:
        controller: dict[str, Any] = {"model": parsed.usb_model, "index": 0}
        if parsed.usb_model in usb.XHCI_MODELS and len(parsed.redirdevs) > usb.PORTS[parsed.usb_model]:
            controller["ports"] = len(parsed.redirdevs)
        rows.append({"type": "controller", "device": "usb", "spec_params": controller})
    for dev in parsed.redirdevs:
        rows.append({"type": "redirdev", "device": dev.type, "spec_params": dev.spec_params()})
    return rows
