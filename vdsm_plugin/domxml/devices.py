"""The device registry: schema `type` -> the module that builds and reads that element."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from lxml import etree

from vdsm_plugin.domxml import common, controller, hostdev, nic, redirdev
from vdsm_plugin.domxml.base import as_element, children, invalid

Builder = Callable[[Mapping[str, Any], "Mapping[str, Any] | None"], etree._Element]


@dataclass(frozen=True)
class DeviceType:
    build: Builder
    read: Callable[[etree._Element], dict[str, Any]]
    reported: Callable[[etree._Element], bool] = lambda el: True
    bootable: bool = False   # libvirt takes a per-device <boot order> on it


# schema `type` == libvirt element name. The order is the preference for the default boot device.
REGISTRY: dict[str, DeviceType] = {
    nic.TAG: DeviceType(nic.build, nic.read, bootable=True),
    hostdev.TAG: DeviceType(hostdev.build, hostdev.read, bootable=True),
    redirdev.TAG: DeviceType(redirdev.build, redirdev.read, bootable=True),
    controller.TAG: DeviceType(controller.build, controller.read, controller.reported),
}


def build_device(dev: Mapping[str, Any], resolved_source: Mapping[str, Any] | None = None) -> etree._Element:
    """The device element for a schema device dict (nic, hostdev, redirdev, controller)."""
    kind = REGISTRY.get(dev.get("type"))  # type: ignore[arg-type]
    if kind is None:
        raise invalid(f"unknown device type {dev.get('type')!r}", field="type")
    return kind.build(dev, resolved_source)


def device_to_dict(el: etree._Element) -> dict[str, Any]:
    """A device element as a schema `reportedDevice` dict. Elements without a reader of their own get
    the common keys only (device = their `type` attribute, or the tag)."""
    kind = REGISTRY.get(el.tag)
    return kind.read(el) if kind else common.base_dict(el, el.get("type") or el.tag)


def read_devices(dom: etree._Element | str | bytes) -> list[dict[str, Any]]:
    """Every interface, hostdev, redirdev and USB controller of a domain, in document order."""
    root = as_element(dom)
    devices = root.find("devices")
    if devices is None:
        return []
    return [device_to_dict(el) for el in children(devices)
            if el.tag in REGISTRY and REGISTRY[el.tag].reported(el)]


def kind_of(el: etree._Element) -> str | None:
    """The REGISTRY kind (schema `type`) of a device element, or None when it is not a device this
    package reports (a PCI or SATA controller, a memballoon, ...)."""
    kind = REGISTRY.get(el.tag)
    return el.tag if kind is not None and kind.reported(el) else None


# Compiled once: xpath() compiles its expression at every call.
_BY_ALIAS = etree.XPath("devices/*[alias/@name = $alias]")


def find_device(dom: etree._Element, alias: str) -> etree._Element | None:
    """The device with this alias, of any type."""
    # A location path selects a node-set: a list of elements here (XPath() is typed for any result).
    found = cast(list[etree._Element], _BY_ALIAS(as_element(dom), alias=alias))
    return found[0] if found else None


def find_nic_by_mac(dom: etree._Element, mac: str) -> etree._Element | None:
    return nic.find_by_mac(as_element(dom), mac)
