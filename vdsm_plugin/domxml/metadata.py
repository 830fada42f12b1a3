"""Plugboard's own facts about a VM, kept in the domain's `<metadata>` so they survive libvirt.

The `<pb:vm>` element is also the agent's mark: the agent writes it into every domain it defines
and acts only on domains that carry it (`is_marked`); any other domain of the host is invisible.

    <metadata>
      <pb:vm xmlns:pb="https://plugboard.dev/xmlns/vm/1">
        <pb:osType>rhel_9x64</pb:osType>
        <pb:customProperties><pb:property name="sap_agent">true</pb:property></pb:customProperties>
        <pb:usbRequests><pb:request alias="ua-u1" portPath="2-1"/></pb:usbRequests>
      </pb:vm>
    </metadata>
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lxml import etree

from vdsm_plugin.domxml.base import invalid

NS = "https://plugboard.dev/xmlns/vm/1"
PREFIX = "pb"
METADATA = "metadata"
ROOT = f"{{{NS}}}vm"
PROPERTY = f"{{{NS}}}property"
PROPERTY_NAME = "name"
REQUEST = f"{{{NS}}}request"
REQUEST_ALIAS = "alias"
# <metadata> goes after these children of <domain>, when they are there.
_BEFORE = ("name", "uuid", "genid", "title", "description")


def _write_text(el: etree._Element, value: Any) -> None:
    el.text = str(value)


def _read_text(el: etree._Element) -> str:
    return el.text or ""


def _write_props(el: etree._Element, value: Mapping[str, Any]) -> None:
    for name, text in value.items():
        etree.SubElement(el, PROPERTY, {PROPERTY_NAME: str(name)}).text = str(text)


def _read_props(el: etree._Element) -> dict[str, str]:
    return {p.get(PROPERTY_NAME, ""): p.text or "" for p in el.iterfind(PROPERTY)}


def _write_requests(el: etree._Element, value: Mapping[str, Mapping[str, Any]]) -> None:
    for alias, source in value.items():
        etree.SubElement(el, REQUEST, {REQUEST_ALIAS: alias, **{k: str(v) for k, v in source.items()}})


def _read_requests(el: etree._Element) -> dict[str, dict[str, Any]]:
    """Back to the contract's usbSource: bus and device are numbers there."""
    return {r.get(REQUEST_ALIAS, ""): {str(k): int(v) if k in ("bus", "device") else str(v)
                                       for k, v in r.attrib.items() if k != REQUEST_ALIAS}
            for r in el.iterfind(REQUEST)}


# key -> (write, read): what each key holds and how
KEYS = {
    "osType": (_write_text, _read_text),
    "customProperties": (_write_props, _read_props),
    # A USB host device's source as it was asked for (by port path, serial, node device, vendor and
    # product), by alias: the definition names the bus and device numbers it was resolved to, which a
    # device gets anew each time it is plugged in, so VM.start resolves the request again.
    "usbRequests": (_write_requests, _read_requests),
}


def _codec(key: str):
    try:
        return KEYS[key]
    except KeyError:
        raise invalid(f"unknown metadata key {key!r}") from None


def _root(dom: etree._Element, create: bool) -> etree._Element | None:
    meta = dom.find(METADATA)
    if meta is None:
        if not create:
            return None
        meta = etree.Element(METADATA)
        anchors = [i for i, c in enumerate(dom) if c.tag in _BEFORE]
        dom.insert(anchors[-1] + 1 if anchors else 0, meta)
    vm = meta.find(ROOT)
    if vm is None and create:
        vm = etree.SubElement(meta, ROOT, nsmap={PREFIX: NS})
    return vm


def set_metadata(dom: etree._Element, key: str, value: Any) -> etree._Element:
    """Set (or, with None, remove) one key of the plugboard metadata, in place."""
    write, _ = _codec(key)
    vm = _root(dom, create=value is not None)
    if vm is None:
        return dom
    tag = f"{{{NS}}}{key}"
    for old in vm.findall(tag):
        vm.remove(old)
    if value is not None:
        write(etree.SubElement(vm, tag), value)
    return dom


def get_metadata(dom: etree._Element, key: str) -> Any:
    """One key of the plugboard metadata, or None when it is not set."""
    _, read = _codec(key)
    vm = _root(dom, create=False)
    el = None if vm is None else vm.find(f"{{{NS}}}{key}")
    return None if el is None else read(el)


def mark(dom: etree._Element) -> etree._Element:
    """Mark the domain as Plugboard's, in place."""
    _root(dom, create=True)
    return dom


def is_marked(dom: etree._Element) -> bool:
    return _root(dom, create=False) is not None
