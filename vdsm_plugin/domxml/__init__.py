"""Pure lxml builders and readers of libvirt domain XML (no libvirt here).

Each device type has one small module (nic, hostdev, redirdev, controller) that declares its XML
facts in tables and both builds the element from the schema's device dict and reads it back as a
`reportedDevice` dict; `address` converts guest and host addresses both ways. Documents are edited
in place, so elements and attributes this package does not know survive parse -> edit -> tostring.

Reading reports libvirt's names: `nicModel` is "virtio" (not VDSM's "pv"); interface kinds map back
to the schema's (ethernet -> bridgeless, hostdev -> sriov, network + 802.1Qbh -> vnlink).
"""
from __future__ import annotations

from lxml import etree

from vdsm_plugin.domxml import address
from vdsm_plugin.domxml.base import parse, tostring
from vdsm_plugin.domxml.common import device_alias, new_alias
from vdsm_plugin.domxml.controller import used_indexes
from vdsm_plugin.domxml.devices import (REGISTRY, build_device, device_to_dict, find_device, find_nic_by_mac,
                                         kind_of, read_devices)
from vdsm_plugin.domxml.domain import LAST_BOOT_ORDER, build_domain, device_boot
from vdsm_plugin.domxml.metadata import get_metadata, is_marked, mark, set_metadata
from vdsm_plugin.domxml.nic import set_link_state


def strip_address(el: etree._Element) -> etree._Element:
    """Remove a device's guest `<address>` (not its source's) so libvirt picks one; in place."""
    return address.strip(el)


__all__ = [
    "LAST_BOOT_ORDER", "REGISTRY", "build_device", "build_domain", "device_alias", "device_boot",
    "device_to_dict", "find_device", "find_nic_by_mac", "get_metadata", "is_marked", "kind_of", "mark",
    "new_alias", "parse",
    "read_devices", "set_link_state", "set_metadata", "strip_address", "tostring", "used_indexes",
]
