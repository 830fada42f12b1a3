"""Detach a host device from a VM for good: its row goes and the device is free again (available, or
removed if it left the host meanwhile). A stopped VM's definition simply loses it (seed 002's "detach
from an inactive domain"); on a running VM it must be deactivated (hot-unplugged) first."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine import reasons as R
from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common
from engine.commands.outcome import Outcome
from engine.dao import audit, devices, host_devices
from engine.dao.models import Vm, VmDevice
from engine.devices import kinds
from engine.errors import Conflict, Reason
from engine.hostclient import HostClientFactory
from engine.vocab import DOWN, STABLE


@dataclass(frozen=True)
class Params:
    vm_id: str
    hostdev_id: str


def validate(params: Params, *, vm: Vm, device: VmDevice) -> list[Reason]:
    if device.plug_state != STABLE:
        return [R.device_in_flight(device.id, device.plug_state)]
    if vm.status != DOWN and device.is_plugged:
        return [R.plugged_on_running_vm(kinds.HOSTDEV.describe(device), vm.name, "detach")]
    return []


def check(s: Session, vm: Vm, params: Params) -> list[Reason]:
    """canDo with its inputs read from the database (what execute checks; nothing changes)."""
    return validate(params, vm=vm, device=common.load_device(s, vm, params.hostdev_id, kinds.HOSTDEV))


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    with common.audited(sessions, kinds.HOSTDEV.audit("REMOVE"), vm_id=params.vm_id, device_id=params.hostdev_id):
        common.require_admin(principal, "detach a host device from a VM")
        with sessions.begin() as s:
            vm = common.load_vm(s, principal, params.vm_id, for_update=True)
            dev = common.load_device(s, vm, params.hostdev_id, kinds.HOSTDEV)
            found = check(s, vm, params)
            if found:
                raise common.refusal(found, f"Cannot detach {kinds.HOSTDEV.describe(dev)} from VM {vm.name}.")
            name, held = kinds.HOSTDEV.describe(dev), dev.host_device_id
            if not devices.delete_if_stable(s, dev.id, unplugged_only=vm.status != DOWN):
                raise Conflict(f"Cannot detach {name}: another operation is in flight.",
                               reasons=[R.device_in_flight(params.hostdev_id, "in flight")])
            if held is not None:
                host_devices.release(s, held, vm.id)
            audit.record(s, kinds.HOSTDEV.audit("REMOVED"), f"{name} detached from VM {vm.name}", vm_id=vm.id,
                         device_id=params.hostdev_id, host_device_id=held)
            return Outcome(id=params.hostdev_id)
