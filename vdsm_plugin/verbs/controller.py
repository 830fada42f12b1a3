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


def _refuse_if_running(vm: devices.Vm, what: str) -> None:
    if vm.running:
        state = vm.handle.state()
        raise AgentError("controllerNotHotpluggable",
                         f"USB controllers can only be {what} while the VM is down (it is {state})",
                         vmId=vm.id, state=state)


def add_controller(agent: Agent, vmId: str, controller: dict[str, Any]) -> dict[str, Any]:
    vm_id = devices.vm_key(vmId)
    with agent.locks.hold(vm_id):
        vm = devices.open_vm(agent, vm_id)
        _refuse_if_running(vm, "added")
        if controller["index"] in domxml.used_indexes(vm.dom, "usb") and not controller.get("master"):
            raise AgentError("controllerIndexInUse", f"USB controller index {controller['index']} is taken",
                             index=controller["index"])
        devs = vm.dom.find("devices")
        placed = controller_xml.function0_address(controller, devs) if devs is not None else None
        if placed:
            controller = {**controller, "address": placed}
        return devices.plug_opened(agent, vm, controller, hook_kind="device", error="controllerPlugFailed")


def remove_controller(agent: Agent, vmId: str, controller: dict[str, Any]) -> dict[str, Any]:
    vm_id = devices.vm_key(vmId)
    with agent.locks.hold(vm_id):
        vm = devices.open_vm(agent, vm_id)
        _refuse_if_running(vm, "removed")
        result = devices.unplug_opened(agent, vm, controller, kind=controller_xml.TAG, hook_kind="device",
                                       error="controllerPlugFailed")
    return {"status": "removed", "alias": result["alias"]}


METHODS: dict[str, Callable[..., dict[str, Any]]] = {
    "VM.addController": add_controller,
    "VM.removeController": remove_controller,
}
