"""VM.addController / VM.removeController: USB controllers are cold-plug only (QEMU cannot hot-plug
them), so a running VM is refused here, before libvirt is asked."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vdsm_plugin import domxml
from vdsm_plugin.agent import Agent
from vdsm_plugin.domxml import controller as controller_xml
from vdsm_plugin.errors import AgentError
from vdsm_plugin.verbs import devices


def _refuse_if_running(agent: Agent, vm_id: str, what: str) -> None:
    state = agent.hv.state(vm_id)
    if state != "down":
        raise AgentError("controllerNotHotpluggable",
                         f"USB controllers can only be {what} while the VM is down (it is {state})",
                         vmId=vm_id, state=state)


def add_controller(agent: Agent, vmId: str, controller: dict[str, Any]) -> dict[str, Any]:
    vm_id = devices.vm_key(vmId)
    dom = devices.live_dom(agent, vm_id)
    _refuse_if_running(agent, vm_id, "added")
    if controller["index"] in domxml.used_indexes(dom, "usb") and not controller.get("master"):
        raise AgentError("controllerIndexInUse", f"USB controller index {controller['index']} is taken",
                         index=controller["index"])
    placed = controller_xml.function0_address(controller, dom.find("devices"))
    if placed:
        controller = {**controller, "address": placed}
    return devices.plug(agent, vm_id, controller, hook_kind="device", error="controllerPlugFailed")


def remove_controller(agent: Agent, vmId: str, controller: dict[str, Any]) -> dict[str, Any]:
    vm_id = devices.vm_key(vmId)
    devices.live_dom(agent, vm_id)
    _refuse_if_running(agent, vm_id, "removed")
    result = devices.unplug(agent, vm_id, controller, kind=controller_xml.TAG, hook_kind="device",
                            error="controllerPlugFailed")
    return {"status": "removed", "alias": result["alias"]}


METHODS: dict[str, Callable[..., dict[str, Any]]] = {
    "VM.addController": add_controller,
    "VM.removeController": remove_controller,
}
