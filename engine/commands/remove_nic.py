"""Remove a NIC from a VM: only when the VM is down or the NIC is deactivated (unplug it first)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete

from engine.commands import common
from engine.commands import reasons as R
from engine.commands.outcome import Outcome
from engine.dao import audit
from engine.dao.models import Vm, VmDevice, VmNic
from engine.errors import Conflict, Reason, ValidationFailed
from engine.hostclient import HostClientFactory


@dataclass(frozen=True)
class Params:
    vm_id: str
    nic_id: str


def validate(params: Params, *, vm: Vm, nic: VmNic, device: VmDevice) -> list[Reason]:
    found: list[Reason] = []
    if device.plug_state != "stable":
        found.append(R.device_in_flight(device.id, device.plug_state))
    elif vm.status != common.DOWN and device.is_plugged:
        found.append(R.nic_plugged_on_running_vm(nic.name, vm.name, "remove"))
    return found


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params) -> Outcome:
    try:
        with sessions.begin() as s:
            vm = common.load_vm(s, params.vm_id)
            nic = common.load_nic(s, vm, params.nic_id)
            found = validate(params, vm=vm, nic=nic, device=nic.device)
            if found:
                raise common.refusal(found, f"Cannot remove NIC {nic.name} of VM {vm.name}.")
            name, mac = nic.name, nic.mac
            # Compare-and-set: the row goes only if no operation began meanwhile (the NIC row
            # follows its device through the foreign key's ON DELETE CASCADE).
            guard = [VmDevice.id == nic.id, VmDevice.plug_state == "stable"]
            if vm.status != common.DOWN:
                guard.append(VmDevice.is_plugged.is_(False))
            device = nic.device
            s.expunge(nic)
            s.expunge(device)
            gone = s.execute(delete(VmDevice).where(*guard).execution_options(synchronize_session=False))
            if gone.rowcount != 1:
                raise Conflict(f"Cannot remove NIC {name}: another operation is in flight.",
                               reasons=[R.device_in_flight(params.nic_id, "in flight")])
            audit.record(s, "NIC_REMOVED", f"NIC {name} ({mac}) removed from VM {vm.name}", vm_id=vm.id,
                         device_id=params.nic_id, nic=name, mac=mac)
            return Outcome(id=params.nic_id)
    except (ValidationFailed, Conflict) as err:
        common.audit_refusal(sessions, "NIC_REMOVE_FAILED", f"Cannot remove NIC {params.nic_id}", err,
                             vm_id=params.vm_id, device_id=params.nic_id)
        raise
