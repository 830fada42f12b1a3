"""Remove a USB redirection device: when the VM is down or the device is deactivated (unplug it first)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine import reasons as R
from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common
from engine.commands.outcome import Outcome
from engine.dao import audit, devices
from engine.dao.models import Vm, VmDevice
from engine.devices import kinds
from engine.errors import Conflict, Reason
from engine.hostclient import HostClientFactory
from engine.vocab import DOWN, STABLE


@dataclass(frozen=True)
class Params:
    vm_id: str
    redirdev_id: str


def validate(params: Params, *, vm: Vm, device: VmDevice) -> list[Reason]:
    if device.plug_state != STABLE:
        return [R.device_in_flight(device.id, device.plug_state)]
    if vm.status != DOWN and device.is_plugged:
        return [R.plugged_on_running_vm(kinds.REDIRDEV.describe(device), vm.name, "remove")]
    return []


def check(s: Session, vm: Vm, params: Params) -> list[Reason]:
    """canDo with its inputs read from the database (what execute checks; nothing changes)."""
    return validate(params, vm=vm, device=common.load_device(s, vm, params.redirdev_id, kinds.REDIRDEV))


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    with common.audited(sessions, "REDIRDEV_REMOVE", vm_id=params.vm_id, device_id=params.redirdev_id):
        with sessions.begin() as s:
            vm = common.load_vm(s, principal, params.vm_id)
            dev = common.load_device(s, vm, params.redirdev_id, kinds.REDIRDEV)
            found = check(s, vm, params)
            if found:
                raise common.refusal(found, f"Cannot remove {kinds.REDIRDEV.describe(dev)} of VM {vm.name}.")
            name = kinds.REDIRDEV.describe(dev)
            if not devices.delete_if_stable(s, dev.id, unplugged_only=vm.status != DOWN):
                raise Conflict(f"Cannot remove {name}: another operation is in flight.",
                               reasons=[R.device_in_flight(params.redirdev_id, "in flight")])
            audit.record(s, kinds.REDIRDEV.audit("REMOVED"), f"{name} removed from VM {vm.name}", vm_id=vm.id,
                         device_id=params.redirdev_id)
            return Outcome(id=params.redirdev_id)
