"""What every device element has: alias, guest address, boot order."""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from lxml import etree

from vdsm_plugin.domxml import address
from vdsm_plugin.domxml.base import get_attr, make, to_int

ALIAS = ("alias", "name")      # <alias name='ua-...'/>
USER_ALIAS_PREFIX = "ua-"      # libvirt keeps aliases with this prefix as given
BOOT = ("boot", "order")       # <boot order='1'/>


def tail(dev: Mapping[str, Any]) -> list[etree._Element | None]:
    """The children every built device ends with: boot order, alias, guest address."""
    return [
        make(BOOT[0], {BOOT[1]: dev["bootOrder"]}) if dev.get("bootOrder") is not None else None,
        make(ALIAS[0], {ALIAS[1]: dev["alias"]}) if dev.get("alias") else None,
        address.to_element(dev["address"]) if dev.get("address") else None,
    ]


def new_alias() -> str:
    """A user alias for a device its caller did not name."""
    return f"{USER_ALIAS_PREFIX}{uuid.uuid4()}"


def set_boot_order(el: etree._Element, order: int) -> etree._Element:
    """Give a device element `<boot order>` in place, where `tail` puts it (before alias and address)."""
    for old in el.findall(BOOT[0]):
        el.remove(old)
    boot = make(BOOT[0], {BOOT[1]: order})
    anchor = next((c for c in el if c.tag in (ALIAS[0], address.TAG)), None)
    if anchor is None:
        el.append(boot)
    else:
        anchor.addprevious(boot)
    return el


def device_alias(el: etree._Element) -> str | None:
    return get_attr(el, ALIAS[0], ALIAS[1])


def boot_order(el: etree._Element) -> int | None:
    return to_int(get_attr(el, BOOT[0], BOOT[1]))


def base_dict(el: etree._Element, device: str) -> dict[str, Any]:
    """The reportedDevice keys every device has."""
    out: dict[str, Any] = {"type": el.tag, "device": device, "alias": device_alias(el),
                           "address": address.read(el)}
    order = boot_order(el)
    if order is not None:
        out["bootOrder"] = order
    return out
