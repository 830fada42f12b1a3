"""Remove a NIC from a VM: only when the VM is down or the NIC is deactivated (unplug it first)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common
from engine import reasons as R
from engine.commands.outcome import Outcome
from engine.dao import audit, devices
from engine.dao.models import Vm, VmDevice, VmNic
from engine.errors import Conflict, Reason
from engine.hostclient import HostClientFactory
from engine.vocab import DOWN, STABLE


@dataclass(frozen=True)
class Params:
    vm_id: str
    nic_id: str


def validate(params: Params, *, vm: Vm, nic: VmNic, device: VmDevice) -> list[Reason]:
    found: list[Reason] = []
    if device.plug_state != STABLE:
        found.append(R.device_in_flight(device.id, device.plug_state))
    elif vm.status != DOWN and device.is_plugged:
        found.append(R.nic_plugged_on_running_vm(nic.name, vm.name, "remove"))
    return found


def check(s: Session, vm: Vm, params: Params) -> list[Reason]:
    """canDo with its inputs read from the database (what execute checks; nothing changes)."""
    nic = common.load_nic(s, vm, params.nic_id)
    return validate(params, vm=vm, nic=nic, device=nic.device)


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    with common.audited(sessions, "NIC_REMOVE", vm_id=params.vm_id, device_id=params.nic_id):
        with sessions.begin() as s:
            vm = common.load_vm(s, principal, params.vm_id)
            nic = common.load_nic(s, vm, params.nic_id)
            found = validate(params, vm=vm, nic=nic, device=nic.device)   # check()'s, the NIC in hand
            if found:
                raise common.refusal(found, f"Cannot remove NIC {nic.name} of VM {vm.name}.")
            name, mac = nic.name, nic.mac
            # Compare-and-set: the row goes only if no operation began meanwhile.
            if not devices.delete_if_stable(s, nic.id, unplugged_only=vm.status != DOWN):
                raise Conflict(f"Cannot remove NIC {name}: another operation is in flight.",
                               reasons=[R.device_in_flight(params.nic_id, "in flight")])
            audit.record(s, "NIC_REMOVED", f"NIC {name} ({mac}) removed from VM {vm.name}", vm_id=vm.id,
                         device_id=params.nic_id, nic=name, mac=mac)
            return Outcome(id=params.nic_id)
