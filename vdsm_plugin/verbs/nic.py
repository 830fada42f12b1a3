"""VM.hotplugNic / VM.hotunplugNic (VDSM's verbs, codes 49 and 50) and VM.updateNic (link state)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vdsm_plugin import domxml
from vdsm_plugin.domxml import nic as nic_xml
from vdsm_plugin.agent import Agent
from vdsm_plugin.errors import AgentError
from vdsm_plugin.verbs import devices
from vdsm_plugin.virt import LibvirtFailure


def hotplug_nic(agent: Agent, vmId: str, nic: dict[str, Any]) -> dict[str, Any]:
    if nic.get("promisc"):
        # VDSM mirrored a bridge's traffic to the NIC with tc; an agent that cannot must say so
        # rather than plug a NIC that silently sees nothing.
        raise AgentError("hotplugNic", "port mirroring (promisc) is not supported by this agent",
                         field="nic/promisc", alias=nic.get("alias"))
    return devices.plug(agent, vmId, nic, hook_kind="nic", error="hotplugNic")


def hotunplug_nic(agent: Agent, vmId: str, nic: dict[str, Any]) -> dict[str, Any]:
    return devices.unplug(agent, vmId, nic, kind=nic_xml.TAG, hook_kind="nic", error="hotunplugNic")


def update_nic(agent: Agent, vmId: str, nic: dict[str, Any]) -> dict[str, Any]:
    """Only the link state changes live; anything else needs an unplug and a plug."""
    vm_id = devices.vm_key(vmId)
    with agent.locks.hold(vm_id):
        vm = devices.open_vm(agent, vm_id)
        el = devices.find_of_kind(vm.dom, vm_id, nic, nic_xml.TAG)
        domxml.set_link_state(el, nic["linkActive"])
        try:
            vm.handle.update_device(domxml.tostring(el), vm.affect_flags())
        except LibvirtFailure as e:
            raise AgentError("unexpected", e.message, libvirtCode=e.code) from e
        return devices.reported(vm, nic["alias"])


METHODS: dict[str, Callable[..., dict[str, Any]]] = {
    "VM.hotplugNic": hotplug_nic,
    "VM.hotunplugNic": hotunplug_nic,
    "VM.updateNic": update_nic,
}
