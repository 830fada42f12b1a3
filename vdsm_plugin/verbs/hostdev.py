"""VM.hotplugHostdev / VM.hotunplugHostdev: USB (by vendor/product, bus/device, port path or node
device) and PCI (by address or node device) passthrough, checked against the whitelist and against the
VMs that already hold a device."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vdsm_plugin import domxml, hostdevs
from vdsm_plugin.domxml import hostdev as hostdev_xml
from vdsm_plugin.agent import Agent
from vdsm_plugin.errors import AgentError
from vdsm_plugin.verbs import devices
from vdsm_plugin.virt import LibvirtFailure

CAPS = {"usb": "usb_device", "pci": "pci"}


def inventory(agent: Agent, caps: list[str], names: list[str] | None = None) -> list[dict[str, Any]]:
    """The host's devices of `caps` (only those named `names`, when given: one lookup each rather than
    the whole list), each with whether the whitelist allows it and which VM holds it."""
    xmls = agent.hv.nodedev_xmls(caps, names)
    held: list[tuple[str, str, dict[str, Any]]] = []
    # Every domain of the host counts, Plugboard's or not: a device another domain holds is busy.
    for handle in agent.hv.domains():
        try:
            dom = domxml.parse(handle.xml())
        except LibvirtFailure:
            continue  # undefined meanwhile: it holds nothing
        held += [(handle.id, d["device"], d.get("source") or {}) for d in domxml.read_devices(dom)
                 if d["type"] == "hostdev"]
    devs = [d for d in hostdevs.inventory(xmls, agent.whitelist, serial_of=hostdevs.sysfs_serial)
            if d["capability"] in caps]
    pool = devs
    if names is not None and any(hostdevs.source_key(kind, source) is None for _, kind, source in held):
        # A source by vendor/product holds a device only when it matches no other: count among all.
        pool = hostdevs.inventory(agent.hv.nodedev_xmls(caps), agent.whitelist)
    attached = hostdevs.attached_map(held, pool)
    for dev in devs:
        dev["attachedTo"] = attached.get(dev["name"])
    return devs


def resolve(agent: Agent, hostdev: dict[str, Any], devs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The one host device a request designates, allowed by the whitelist and free. `devs` is an
    inventory the caller already has (one scan for all the devices of a VM)."""
    if devs is None:
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
    vm_id = devices.vm_key(vmId)
    with agent.locks.hold(vm_id):
        vm = devices.open_vm(agent, vm_id)  # noVM before looking at the host's devices
        with agent.hostdev_lock:
            dev = resolve(agent, hostdev)
            result = devices.plug_opened(agent, vm, hostdev, hook_kind="device", error="hostdevPlugFailed",
                                         resolved=resolved_source(dev))
    result["nodeDev"] = dev["name"]
    return result


def hotunplug_hostdev(agent: Agent, vmId: str, hostdev: dict[str, Any]) -> dict[str, Any]:
    return devices.unplug(agent, vmId, hostdev, kind=hostdev_xml.TAG, hook_kind="device",
                          error="hostdevUnplugFailed")


METHODS: dict[str, Callable[..., dict[str, Any]]] = {
    "VM.hotplugHostdev": hotplug_hostdev,
    "VM.hotunplugHostdev": hotunplug_hostdev,
}
