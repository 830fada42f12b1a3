"""The one hardened parser, serialization, and the small helpers every device module shares.

Nothing here knows about a particular device; the device modules declare their XML facts in tables and
use these helpers to turn them into elements and back.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from lxml import etree

from vdsm_plugin.errors import AgentError

_Element = etree._Element

# lxml parser objects must not be shared by threads that parse at the same time: one per thread.
_local = threading.local()


def _parser() -> etree.XMLParser:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False,
                                 remove_blank_text=True, load_dtd=False, dtd_validation=False)
        _local.parser = parser
    return parser


def parse(xml: str | bytes) -> _Element:
    """Parse domain or device XML. Entities are never expanded, nothing is fetched from the network,
    and a document with a DOCTYPE is refused (libvirt never writes one)."""
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as e:
        raise AgentError("unexpected", f"malformed XML: {e}") from e
    if root.getroottree().docinfo.doctype:  # type: ignore[union-attr]  # lxml-stubs' DocInfo lacks doctype
        raise AgentError("unexpected", "XML with a DOCTYPE is not accepted")
    return root


def tostring(el: _Element) -> str:
    """The element (without its tail) as pretty-printed unicode text."""
    return etree.tostring(el, encoding="unicode", pretty_print=True, with_tail=False)


def as_element(dom: _Element | str | bytes) -> _Element:
    return parse(dom) if isinstance(dom, (str, bytes)) else dom


def _text(value: Any) -> str:
    if isinstance(value, bool):  # booleans are mapped explicitly (yes/no, up/down) by their callers
        raise TypeError(f"boolean XML value {value!r} needs an explicit mapping")
    return str(value)


def make(tag: str, attrs: Mapping[str, Any] | None = None, *children: _Element | None,
         text: str | None = None) -> _Element:
    """An element with the given attributes (those whose value is None are left out) and children
    (None children are skipped)."""
    el = etree.Element(tag)
    set_attrs(el, attrs or {})
    if text is not None:
        el.text = text
    for child in children:
        if child is not None:
            el.append(child)
    return el


def set_attrs(el: _Element, attrs: Mapping[str, Any]) -> _Element:
    for name, value in attrs.items():
        if value is not None:
            el.set(name, _text(value))
    return el


def ensure_path(el: _Element, path: str) -> _Element:
    """The descendant at `path` ("vlan/tag"), found or created one step at a time."""
    for step in path.split("/"):
        found = el.find(step)
        el = found if found is not None else etree.SubElement(el, step)
    return el


def get_attr(el: _Element, path: str, attr: str) -> str | None:
    found = el.find(path)
    return None if found is None else found.get(attr)


def children(el: _Element) -> Iterable[_Element]:
    """Element children only (comments and processing instructions skipped)."""
    return (c for c in el if isinstance(c.tag, str))


def invalid(detail: str, **data: Any) -> AgentError:
    return AgentError("invalidParams", detail, **data)


def dec(value: Any) -> str:
    """A decimal string for a number given as int, "12" or "0x0c"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = str(value).strip().lower()
    try:
        return str(int(text, 16) if text.startswith("0x") else int(text, 10))
    except ValueError:
        raise invalid(f"{value!r} is not a number") from None


def hexid(value: Any) -> str:
    """A USB vendor or product id as libvirt writes it: 0x + 4 lower-case hex digits."""
    text = str(value).strip().lower().removeprefix("0x")
    try:
        return f"0x{int(text, 16):04x}"
    except ValueError:
        raise invalid(f"{value!r} is not a hexadecimal id") from None


def to_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value, 0) if value.lower().startswith("0x") else int(value, 10)
    except ValueError:
        return None
