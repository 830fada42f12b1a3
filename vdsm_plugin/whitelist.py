"""Which host devices may be passed through to a VM.

The configuration keeps the formats of the original designs (Nova's USB and PCI passthrough
blueprints), so an administrator can paste them as they are:

    usb_white_list_switch = "on"          # default "off": every USB device is allowed
    usb_passthrough_whitelist = [{"vendor": "0x136b", "product": "0x0003", "bus": "2", "device": "2"}]
    pci_passthrough_whitelist = [{"vendor_id": "8086", "product_id": "10c9"}, {"address": "0000:03:00.*"}]

USB: with the switch off every USB device is allowed; with it on, a device is allowed only if some
entry matches it. PCI: a device is allowed only if some entry matches it, so an empty PCI whitelist
allows nothing (Nova's rule). In an entry every key is optional, each key given must match, and an
entry must give at least one key. Hex ids may be written with or without "0x", in either case, as
strings or integers. The lists may also be given as JSON text (as in nova.conf).

Entries are validated strictly when the whitelist is built: an unknown key or a malformed value
raises `WhitelistError` (a ValueError) naming the entry, so a bad configuration stops the agent at
start instead of silently allowing or refusing devices.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable, Mapping

SWITCH_KEY = "usb_white_list_switch"
USB_KEY = "usb_passthrough_whitelist"
PCI_KEY = "pci_passthrough_whitelist"

USB_ENTRY_KEYS = ("vendor", "product", "bus", "device", "port_path")
PCI_ENTRY_KEYS = ("vendor_id", "product_id", "address")

_HEX = re.compile(r"^(0x)?([0-9a-f]{1,4})\Z", re.IGNORECASE)
_PORT_PATH = re.compile(r"^[0-9]+-[0-9]+(\.[0-9]+)*\Z")
_SWITCH = {"on": True, "true": True, "yes": True, "1": True,
           "off": False, "false": False, "no": False, "0": False}


class WhitelistError(ValueError):
    pass


def _hexword(value: Any) -> str:
    """"0x136B", "136b", 0x136b -> "136b" (4 lowercase hex digits)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a hex id, got {value!r}")
    if isinstance(value, int):
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"hex id out of range: {value!r}")
        return f"{value:04x}"
    if isinstance(value, str):
        m = _HEX.match(value.strip())
        if m:
            return m.group(2).lower().zfill(4)
    raise ValueError(f"expected a hex id such as '0x136b' or '136b', got {value!r}")


def _byte(value: Any) -> int:
    """A USB bus or device number: 0..255, as an int or a decimal (or 0x-prefixed) string."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
    if not isinstance(value, int) or not 0 <= value <= 255:
        raise ValueError(f"expected a number from 0 to 255, got {value!r}")
    return value


def _pci_pattern(value: Any) -> str:
    """"0000:02:00.*", "02:00.0" (any domain), "*:*:*.*" -> "dddd:bb:ss.f" with '*' for any part."""
    if not isinstance(value, str):
        raise ValueError(f"expected a PCI address such as '0000:02:00.0', got {value!r}")
    text = value.strip().lower()
    head, dot, function = text.rpartition(".")
    parts = head.split(":") if dot else []
    if len(parts) == 2:
        parts.insert(0, "*")
    if len(parts) != 3:
        raise ValueError(f"expected a PCI address such as '0000:02:00.0', got {value!r}")
    out = []
    for part, width, top in zip(parts + [function], (4, 2, 2, 1), (0xFFFF, 0xFF, 0x1F, 7)):
        if part == "*":
            out.append("*")
            continue
        if not re.fullmatch(r"[0-9a-f]{1,%d}" % width, part) or int(part, 16) > top:
            raise ValueError(f"malformed PCI address {value!r}")
        out.append(f"{int(part, 16):0{width}x}")
    return "{}:{}:{}.{}".format(*out)


def _address_matches(pattern: str, address: str | None) -> bool:
    if not address:
        return False
    try:
        actual = _pci_pattern(address)
    except ValueError:
        return False
    return all(p in ("*", a) for p, a in zip(re.split(r"[:.]", pattern), re.split(r"[:.]", actual)))


def _entries(value: Any, key: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as e:
            raise WhitelistError(f"{key}: not valid JSON ({e.msg})") from None
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise WhitelistError(f"{key}: expected a list of entries, got {value!r}")
    return list(value)


def _normalise(entry: Any, key: str, index: int, keys: tuple[str, ...]) -> dict[str, Any]:
    where = f"{key}[{index}] {entry!r}"
    if not isinstance(entry, Mapping):
        raise WhitelistError(f"{where}: expected a table of {', '.join(keys)}")
    unknown = sorted(set(entry) - set(keys), key=str)
    if unknown:
        raise WhitelistError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                             f"expected some of {', '.join(keys)}")
    if not entry:
        raise WhitelistError(f"{where}: an entry must give at least one of {', '.join(keys)}")
    out: dict[str, Any] = {}
    for k in keys:
        if k not in entry:
            continue
        v = entry[k]
        try:
            if k in ("vendor", "product", "vendor_id", "product_id"):
                out[k] = _hexword(v)
            elif k in ("bus", "device"):
                out[k] = _byte(v)
            elif k == "port_path":
                if not isinstance(v, str) or not _PORT_PATH.match(v.strip()):
                    raise ValueError(f"expected a USB port path such as '1-4.2', got {v!r}")
                out[k] = v.strip()
            else:  # address
                out[k] = _pci_pattern(v)
        except ValueError as e:
            raise WhitelistError(f"{where}: {k}: {e}") from None
    return out


def _switch(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _SWITCH:
        return _SWITCH[value.strip().lower()]
    raise WhitelistError(f"{SWITCH_KEY}: expected 'on' or 'off', got {value!r}")


class Whitelist:
    """Built once at agent start; read-only afterwards (entries are normalised copies)."""

    def __init__(self, usb_switch: bool | str = False, usb: Iterable[Mapping[str, Any]] | str | None = (),
                 pci: Iterable[Mapping[str, Any]] | str | None = ()) -> None:
        self.usb_switch: bool = _switch(usb_switch)
        self.usb: tuple[dict[str, Any], ...] = tuple(
            _normalise(e, USB_KEY, i, USB_ENTRY_KEYS) for i, e in enumerate(_entries(usb, USB_KEY)))
        self.pci: tuple[dict[str, Any], ...] = tuple(
            _normalise(e, PCI_KEY, i, PCI_ENTRY_KEYS) for i, e in enumerate(_entries(pci, PCI_KEY)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Whitelist):
            return NotImplemented
        return (self.usb_switch, self.usb, self.pci) == (other.usb_switch, other.usb, other.pci)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Whitelist(usb_switch={self.usb_switch!r}, usb={list(self.usb)!r}, pci={list(self.pci)!r})"

    @classmethod
    def from_config(cls, mapping: Mapping[str, Any] | None) -> "Whitelist":
        """From the agent configuration's [whitelist] section (the seeds' key names)."""
        mapping = dict(mapping or {})
        unknown = sorted(set(mapping) - {SWITCH_KEY, USB_KEY, PCI_KEY})
        if unknown:
            raise WhitelistError(f"whitelist: unknown key(s) {', '.join(map(repr, unknown))}; "
                                 f"expected {SWITCH_KEY}, {USB_KEY}, {PCI_KEY}")
        return cls(usb_switch=mapping.get(SWITCH_KEY, False), usb=mapping.get(USB_KEY),
                   pci=mapping.get(PCI_KEY))

    def allows(self, dev: Mapping[str, Any]) -> bool:
        """Does the whitelist allow this inventory device (a Host.hostdevListByCaps item)?"""
        capability = dev.get("capability")
        if capability == "usb_device":
            return not self.usb_switch or any(self._usb_match(e, dev) for e in self.usb)
        if capability == "pci":
            return any(self._pci_match(e, dev) for e in self.pci)
        return False

    @staticmethod
    def _usb_match(entry: Mapping[str, Any], dev: Mapping[str, Any]) -> bool:
        fields = {"vendor": "vendorId", "product": "productId", "bus": "bus", "device": "device",
                  "port_path": "portPath"}
        for key, want in entry.items():
            have = dev.get(fields[key])
            if key in ("vendor", "product"):
                try:
                    have = _hexword(have)
                except ValueError:
                    return False
            if have != want:
                return False
        return True

    @staticmethod
    def _pci_match(entry: Mapping[str, Any], dev: Mapping[str, Any]) -> bool:
        for key, want in entry.items():
            if key == "address":
                if not _address_matches(want, dev.get("pciAddress")):
                    return False
                continue
            try:
                have = _hexword(dev.get("vendorId" if key == "vendor_id" else "productId"))
            except ValueError:
                return False
            if have != want:
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """The effective whitelist, in the configuration's own format (for Host.getCapabilities);
        `Whitelist.from_config(w.to_dict()) == w`."""
        usb = [{k: (f"0x{v}" if k in ("vendor", "product") else str(v) if k in ("bus", "device") else v)
                for k, v in e.items()} for e in self.usb]
        return {SWITCH_KEY: "on" if self.usb_switch else "off",
                USB_KEY: usb,
                PCI_KEY: [dict(e) for e in self.pci]}
