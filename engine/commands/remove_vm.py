"""Remove a VM and its devices: only when it is down."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common
from engine import reasons as R
from engine.commands.outcome import Outcome
from engine.dao import audit, vms
from engine.dao.models import Vm
from engine.errors import Conflict, Reason
from engine.hostclient import HostClientFactory


@dataclass(frozen=True)
class Params:
    vm_id: str


def validate(params: Params, *, vm: Vm) -> list[Reason]:
    return [] if vm.status == common.DOWN else [R.vm_not_down(vm.name, vm.status, "remove the VM")]



def check(s: Session, vm: Vm, params: Params) -> list[Reason]:
    """canDo as execute checks it (the VM is all it needs)."""
    return validate(params, vm=vm)

def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    with common.audited(sessions, "VM_REMOVE", vm_id=params.vm_id):
        with sessions.begin() as s:
            vm = common.load_vm(s, principal, params.vm_id)
            found = check(s, vm, params)
            if found:
                raise common.refusal(found, f"Cannot remove VM {vm.name}.")
            name = vm.name
            # Guard against a start that began meanwhile: only a VM still down goes.
            if not vms.set_status_cas(s, vm.id, (common.DOWN,), common.DOWN):
                raise Conflict(f"Cannot remove VM {name}: its status changed meanwhile.",
                               reasons=[R.vm_not_down(name, "changing", "remove the VM")])
            vms.delete(s, vm.id)
            audit.record(s, "VM_REMOVED", f"VM {name} removed", vm_id=params.vm_id, vm=name)
            return Outcome(id=params.vm_id)
