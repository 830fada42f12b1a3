"""`<controller>`: USB controllers (cold-plug only: QEMU cannot hot-plug them), and back.

Companion controllers (ich9-uhciN sharing an index with ich9-ehci1 through `<master startport>`) are
not built here: each request is one controller with its own index.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lxml import etree

from vdsm_plugin.domxml import common
from vdsm_plugin.domxml.base import invalid, make, to_int

TAG = "controller"
USB = "usb"
# schema key -> <controller> attribute (integers are read back as int)
ATTRS = {"index": "index", "model": "model", "ports": "ports"}
INT_KEYS = ("index", "ports")
# Only these models take a `ports` count (libvirt refuses it on the others when the VM starts).
MODELS_WITH_PORTS = ("qemu-xhci", "nec-xhci")


def build(dev: Mapping[str, Any], resolved_source: Mapping[str, Any] | None = None) -> etree._Element:
    if dev.get("device") != USB:
        raise invalid(f"only USB controllers are supported, not {dev.get('device')!r}", field="device")
    if dev.get("index") is None:
        raise invalid("a controller needs an index", field="index")
    if dev.get("ports") is not None and dev.get("model") not in MODELS_WITH_PORTS:
        raise invalid(f"a {dev.get('model')} controller has a fixed number of ports; only "
                      f"{', '.join(MODELS_WITH_PORTS)} take `ports`", field="ports")
    return make(TAG, {"type": USB, **{attr: dev.get(key) for key, attr in ATTRS.items()}}, *common.tail(dev))


def read(el: etree._Element) -> dict[str, Any]:
    out = common.base_dict(el, el.get("type") or TAG)
    for key, attr in ATTRS.items():
        value = el.get(attr)
        if value is not None:
            out[key] = to_int(value) if key in INT_KEYS else value
    return out


def reported(el: etree._Element) -> bool:
    """Only USB controllers are devices the agent reports; PCI, SATA, ... are the machine's."""
    return el.get("type") == USB


def used_indexes(dom: etree._Element, ctype: str = USB) -> set[int]:
    """The indexes taken by controllers of type `ctype`."""
    return {i for el in dom.iterfind(f"devices/{TAG}")
            if el.get("type") == ctype and (i := to_int(el.get("index"))) is not None}
