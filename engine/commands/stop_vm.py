"""Power a VM off: VM.destroy on its host; the VM goes down through the one "VM went down" settler
(device addresses kept for the next run; a pending unplug completes, a pending plug does not).

A VM that is powering up cannot be stopped yet: its start owns it until the host answers, so a stop
sent a moment after a start is refused (409) instead of racing it."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine import agent_codes
from engine import reasons as R
from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common
from engine.commands.outcome import Outcome
from engine.dao import vms
from engine.dao.models import Host, Vm
from engine.devices import state
from engine.errors import Conflict, HostCallFailed, HostUnreachable, Reason
from engine.hostclient import HostClientFactory
from engine.vocab import DOWN, PAUSED, POWERING_DOWN, UNKNOWN, UP

STOPPABLE = (UP, PAUSED, UNKNOWN)


@dataclass(frozen=True)
class Params:
    vm_id: str


def validate(params: Params, *, vm: Vm) -> list[Reason]:
    if vm.status == DOWN:
        return [R.vm_not_running(vm.name, vm.status)]
    if vm.status not in STOPPABLE:
        return [R.vm_status_illegal(vm.name, vm.status, STOPPABLE, "stop the VM")]
    return []



def check(s: Session, vm: Vm, params: Params) -> list[Reason]:
    """canDo as execute checks it (the VM is all it needs)."""
    return validate(params, vm=vm)

def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    with common.audited(sessions, "VM_STOP", vm_id=params.vm_id):
        with sessions.begin() as s:
            vm = common.load_vm(s, principal, params.vm_id)
            found = check(s, vm, params)
            if found:
                raise common.refusal(found, f"Cannot stop VM {vm.name}.")
            vm_name, status = vm.name, vm.status
            host: Host | None = common.load_host(s, vm)
            if not vms.set_status_cas(s, vm.id, (status,), POWERING_DOWN):
                raise Conflict(f"Cannot stop VM {vm_name}: its status changed meanwhile.",
                               reasons=[R.vm_status_illegal(vm_name, "changing", STOPPABLE, "stop the VM")])
            if host is None:
                state.vm_stopped(s, vm, f"VM {vm_name} marked down (it had no host)", expected=(POWERING_DOWN,))
                return Outcome(id=vm.id)

    try:
        hosts(host).call("VM.destroy", {"vmId": params.vm_id})
    except (HostUnreachable, HostCallFailed) as err:
        if not (isinstance(err, HostCallFailed) and err.host_code == agent_codes.code("noVM")):
            with sessions.begin() as s:
                vms.set_status_cas(s, params.vm_id, (POWERING_DOWN,), status)
                common.audit_vm_host_failure(s, err, failed_code="VM_STOP_FAILED", action="stop",
                                             vm_id=params.vm_id, vm_name=vm_name, host=host)
            raise
    with sessions.begin() as s:
        row = vms.get(s, params.vm_id)
        if row is not None:
            state.vm_stopped(s, row, f"VM {vm_name} stopped on host {host.name}", expected=(POWERING_DOWN,),
                             host=host, host_name=host.name)
    return Outcome(id=params.vm_id)
