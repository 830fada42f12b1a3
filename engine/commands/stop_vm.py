"""Power a VM off: VM.destroy on its host; the VM goes down. Device addresses are kept for the next
run; device operations left in flight end (a pending unplug completes: the domain is gone)."""
from __future__ import annotations

from dataclasses import dataclass

from engine.commands import common
from engine.commands import reasons as R
from engine.commands.outcome import Outcome
from engine.dao import audit, devices, vms
from engine.dao.models import Host, Vm
from engine.errors import Conflict, HostCallFailed, HostUnreachable, Reason, ValidationFailed
from engine.hostclient import HostClientFactory

STOPPABLE = ("up", "paused", "powering_up", "unknown")
NO_VM = 1   # schema/errors.yaml noVM: the domain is already gone


@dataclass(frozen=True)
class Params:
    vm_id: str


def validate(params: Params, *, vm: Vm) -> list[Reason]:
    if vm.status == common.DOWN:
        return [R.vm_not_running(vm.name, vm.status)]
    if vm.status not in STOPPABLE:
        return [R.vm_status_illegal(vm.name, vm.status, STOPPABLE, "stop the VM")]
    return []


def _mark_down(s, vm_id: str) -> None:
    vms.set_status_cas(s, vm_id, ("powering_down",), common.DOWN, run_on_host=None)
    for device in devices.list_in_flight(s, vm_id=vm_id):
        if device.plug_state == "unplugging":
            devices.finish_transition(s, device.id, from_state="unplugging", is_plugged=False, address=None)
        else:
            devices.finish_transition(s, device.id, from_state="plugging", is_plugged=False)


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params) -> Outcome:
    try:
        with sessions.begin() as s:
            vm = common.load_vm(s, params.vm_id)
            found = validate(params, vm=vm)
            if found:
                raise common.refusal(found, f"Cannot stop VM {vm.name}.")
            vm_name, status = vm.name, vm.status
            host: Host | None = common.load_host(s, vm)
            if not vms.set_status_cas(s, vm.id, (status,), "powering_down"):
                raise Conflict(f"Cannot stop VM {vm_name}: its status changed meanwhile.",
                               reasons=[R.vm_status_illegal(vm_name, "changing", STOPPABLE, "stop the VM")])
            if host is None:
                _mark_down(s, vm.id)
                audit.record(s, "VM_STOPPED", f"VM {vm_name} marked down (it had no host)", vm_id=vm.id)
                return Outcome(id=vm.id)
    except (ValidationFailed, Conflict) as err:
        common.audit_refusal(sessions, "VM_STOP_FAILED", f"Cannot stop VM {params.vm_id}", err, vm_id=params.vm_id)
        raise

    try:
        hosts(host).call("VM.destroy", {"vmId": params.vm_id})
    except (HostUnreachable, HostCallFailed) as err:
        if not (isinstance(err, HostCallFailed) and err.host_code == NO_VM):
            with sessions.begin() as s:
                vms.set_status_cas(s, params.vm_id, ("powering_down",), status)
                common.audit_vm_host_failure(s, err, failed_code="VM_STOP_FAILED", action="stop",
                                             vm_id=params.vm_id, vm_name=vm_name, host=host)
            raise
    with sessions.begin() as s:
        _mark_down(s, params.vm_id)
        audit.record(s, "VM_STOPPED", f"VM {vm_name} stopped on host {host.name}", vm_id=params.vm_id,
                     host_id=host.id, host=host.name)
    return Outcome(id=params.vm_id)
