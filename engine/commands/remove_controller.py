"""Remove a USB controller from a VM, only while it is down, and only when no USB device of the VM
sits on it (its bus) -- or, for the VM's last controller, when the VM has no USB device at all. An
ICH9 EHCI goes with its UHCI companions."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine import reasons as R
from engine import usb
from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common
from engine.commands.outcome import Outcome
from engine.dao import audit, devices
from engine.dao.models import Vm, VmDevice
from engine.devices import kinds
from engine.errors import Conflict, Reason
from engine.hostclient import HostClientFactory
from engine.vocab import DOWN

@dataclass(frozen=True)
class Params:
    vm_id: str
    controller_id: str


def carried(controller: VmDevice, others: list[VmDevice]) -> list[VmDevice]:
    """The USB devices that sit on `controller`: those addressed on its bus, and, when it is the VM's
    only (non-companion) USB controller, every USB device of the VM."""
    index = str((controller.spec_params or {}).get("index"))
    masters = [d for d in others if d.type == "controller" and d.id != controller.id
               and (d.spec_params or {}).get("model") not in usb.COMPANION_MODELS]
    usb_devices = [d for d in others if usb.on_usb(d)]
    if not masters:
        return usb_devices
    return [d for d in usb_devices if d.address and str(d.address.get("bus")) == index]


def validate(params: Params, *, vm: Vm, controller: VmDevice, others: list[VmDevice]) -> list[Reason]:
    found: list[Reason] = []
    if vm.status != DOWN:
        found.append(R.not_hotpluggable(kinds.CONTROLLER.label, vm.name))
    busy = carried(controller, others)
    name = kinds.CONTROLLER.name(controller)
    if busy:
        found.append(R.controller_carries_devices(name, [kinds.of(d).describe(d) for d in busy]))
    else:
        # Devices not started yet have no address: what is left must still have a port for each.
        going = {d.id for d in group(controller, others)}
        left = [d.spec_params or {} for d in others if d.type == "controller" and d.id not in going]
        active = sum(1 for d in others if usb.on_usb(d))
        free = usb.free_ports(vm.machine, left, active)
        if free < 0:
            found.append(R.usb_ports_short(name, active, active + free))
    return found


def group(controller: VmDevice, others: list[VmDevice]) -> list[VmDevice]:
    """The controller and, for an ICH9 EHCI, the companions at its index."""
    spec = controller.spec_params or {}
    if spec.get("model") != "ich9-ehci1":
        return [controller]
    return [controller] + [d for d in others if d.type == "controller" and (d.spec_params or {}).get("index")
                           == spec.get("index") and (d.spec_params or {}).get("model") in usb.COMPANION_MODELS]


def _others(s: Session, vm: Vm, controller: VmDevice) -> list[VmDevice]:
    return [d for d in devices.list_for_vm(s, vm.id) if d.id != controller.id]


def check(s: Session, vm: Vm, params: Params) -> list[Reason]:
    """canDo with its inputs read from the database (what execute checks; nothing changes)."""
    controller = common.load_device(s, vm, params.controller_id, kinds.CONTROLLER)
    return validate(params, vm=vm, controller=controller, others=_others(s, vm, controller))


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    with common.audited(sessions, "CONTROLLER_REMOVE", vm_id=params.vm_id, device_id=params.controller_id):
        with sessions.begin() as s:
            vm = common.load_vm(s, principal, params.vm_id, for_update=True)
            controller = common.load_device(s, vm, params.controller_id, kinds.CONTROLLER)
            others = _others(s, vm, controller)
            found = validate(params, vm=vm, controller=controller, others=others)   # check()'s, rows in hand
            if found:
                raise common.refusal(found, f"Cannot remove {kinds.CONTROLLER.describe(controller)} of VM {vm.name}.")
            for dev in group(controller, others):
                name = kinds.CONTROLLER.describe(dev)
                if not devices.delete_if_stable(s, dev.id, unplugged_only=False):
                    raise Conflict(f"Cannot remove {name}: another operation is in flight.",
                                   reasons=[R.device_in_flight(dev.id, "in flight")])
                audit.record(s, kinds.CONTROLLER.audit("REMOVED"), f"{name} removed from VM {vm.name}",
                             vm_id=vm.id, device_id=dev.id)
            return Outcome(id=params.controller_id)
