"""`<redirdev bus='usb'>`: SPICE USB redirection (spicevmc) or a USB device served over TCP, and back."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lxml import etree

from vdsm_plugin.domxml import common
from vdsm_plugin.domxml.base import get_attr, invalid, make, to_int

TAG = "redirdev"
BUS = "usb"
KINDS = ("spicevmc", "tcp")       # schema device == libvirt redirdev type
TCP = "tcp"
DEFAULT_MODE = "connect"

# schema key -> <source> attribute (tcp only)
SOURCE_ATTRS = {"mode": "mode", "host": "host", "port": "service"}


def build(dev: Mapping[str, Any], resolved_source: Mapping[str, Any] | None = None) -> etree._Element:
    kind = dev.get("device")
    if kind not in KINDS:
        raise invalid(f"unknown redirdev kind {kind!r}", field="device")
    source = None
    if kind == TCP:
        if not dev.get("host") or not dev.get("port"):
            raise invalid("a tcp redirdev needs host and port", field="host")
        values = {"mode": DEFAULT_MODE, **{k: dev[k] for k in SOURCE_ATTRS if dev.get(k) is not None}}
        source = make("source", {attr: values.get(key) for key, attr in SOURCE_ATTRS.items()})
    return make(TAG, {"bus": BUS, "type": kind}, source, *common.tail(dev))


def read(el: etree._Element) -> dict[str, Any]:
    out = common.base_dict(el, el.get("type") or TAG)
    for key, attr in SOURCE_ATTRS.items():
        value = get_attr(el, "source", attr)
        if value is not None:
            out[key] = to_int(value) if key == "port" else value
    return out
