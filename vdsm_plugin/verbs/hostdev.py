"""VM.hotplugHostdev / VM.hotunplugHostdev: USB (by vendor/product, bus/device, port path or node
device) and PCI (by address or node device) passthrough, checked against the whitelist and against the
VMs that already hold a device."""
from __future__ import annotations

from typing import Any

from vdsm_plugin import domxml, hostdevs
from vdsm_plugin.agent import Agent
from vdsm_plugin.errors import AgentError
from vdsm_plugin.verbs import devices

CAPS = {"usb": "usb_device", "pci": "pci"}


def _hex(v: Any) -> str:
    return str(v).lower().removeprefix("0x").zfill(4) if v not in (None, "") else ""


def _int(v: Any) -> int | None:
    try:
        return int(str(v), 0) if v not in (None, "") else None
    except ValueError:
        return None


def holds(source: dict[str, Any], dev: dict[str, Any]) -> bool:
    """Does a domain's hostdev <source> (as domxml reports it) designate this inventory device?"""
    if dev["capability"] == "pci":
        if not dev.get("pciAddress") or "slot" not in source:
            return False
        addr = "{:04x}:{:02x}:{:02x}.{:x}".format(*(_int(source.get(k)) or 0 for k in ("domain", "bus", "slot", "function")))
        return addr == dev["pciAddress"].lower()
    bus, device = _int(source.get("bus")), _int(source.get("device"))
    if bus is not None and device is not None:
        return (bus, device) == (dev.get("bus"), dev.get("device"))
    vendor = _hex(source.get("vendor") or source.get("vendorId"))
    product = _hex(source.get("product") or source.get("productId"))
    return bool(vendor) and (vendor, product) == (dev["vendorId"], dev["productId"])


def inventory(agent: Agent, caps: list[str]) -> list[dict[str, Any]]:
    """The host's devices, each with whether the whitelist allows it and which VM holds it."""
    devs = hostdevs.inventory(agent.hv.nodedev_xmls(caps), agent.whitelist)
    held: list[tuple[str, dict[str, Any]]] = []
    for vm_id in agent.hv.list_ids():
        try:
            dom = domxml.parse(agent.hv.xml(vm_id))
        except Exception:  # noqa: BLE001 - a domain vanishing meanwhile holds nothing
            continue
        held += [(vm_id, d.get("source") or {}) for d in domxml.read_devices(dom) if d["type"] == "hostdev"]
    for dev in devs:
        dev["attachedTo"] = next((vm for vm, src in held if holds(src, dev)), None)
    return devs


def resolve(agent: Agent, hostdev: dict[str, Any]) -> dict[str, Any]:
    """The one host device a request designates, allowed by the whitelist and free."""
    devs = inventory(agent, [CAPS[hostdev["device"]]])
    source = hostdev["source"]
    dev = hostdevs.resolve_usb(source, devs) if hostdev["device"] == "usb" else hostdevs.resolve_pci(source, devs)
    if not dev["allowed"]:
        raise AgentError("hostdevNotAllowed", f"{dev['name']} ({dev['vendorId']}:{dev['productId']}) is not "
                         "in the passthrough whitelist", nodeDev=dev["name"])
    if dev.get("attachedTo"):
        raise AgentError("hostdevBusy", f"{dev['name']} is attached to VM {dev['attachedTo']}",
                         nodeDev=dev["name"], vmId=dev["attachedTo"])
    return dev


def resolved_source(dev: dict[str, Any]) -> dict[str, Any]:
    """What the XML builder needs to name exactly this device."""
    if dev["capability"] == "pci":
        dom_, bus, rest = dev["pciAddress"].split(":")
        slot, func = rest.split(".")
        return {"domain": f"0x{dom_}", "bus": f"0x{bus}", "slot": f"0x{slot}", "function": f"0x{func}"}
    return {"vendorId": dev["vendorId"], "productId": dev["productId"], "bus": dev["bus"], "device": dev["device"]}


def hotplug_hostdev(agent: Agent, vmId: str, hostdev: dict[str, Any]) -> dict[str, Any]:
    devices.live_dom(agent, devices.vm_key(vmId))  # noVM before looking at the host's devices
    with agent.hostdev_lock:
        dev = resolve(agent, hostdev)
        result = devices.plug(agent, vmId, hostdev, hook_kind="device", error="hostdevPlugFailed",
                              resolved=resolved_source(dev))
    result["nodeDev"] = dev["name"]
    return result


def hotunplug_hostdev(agent: Agent, vmId: str, hostdev: dict[str, Any]) -> dict[str, Any]:
    return devices.unplug(agent, vmId, hostdev, hook_kind="device", error="hostdevUnplugFailed")


METHODS = {
    "VM.hotplugHostdev": hotplug_hostdev,
    "VM.hotunplugHostdev": hotunplug_hostdev,
}
