"""Confirm that a host the engine cannot reach was rebooted or is off (oVirt's manual fence): every VM
it ran is marked down, its device operations in flight settled, as if each had stopped (refused
while one is starting or stopping: its command settles it when its host call ends). They can then
be started again, and the host put in maintenance and removed.

The engine takes the administrator's word: a VM that in fact still runs there would run twice once
started elsewhere. Only an unreachable host is fenced; one whose agent answers has its VMs stopped."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine import reasons as R
from engine.commands import common
from engine.commands.outcome import Outcome
from engine.dao import audit, vms
from engine.dao.models import Host, Vm
from engine.devices import state
from engine.errors import Reason
from engine.hostclient import HostClientFactory
from engine.vocab import CHANGING_STATUSES, FENCE_MANUAL, HOST_UNREACHABLE, RUNNING_STATUSES


@dataclass(frozen=True)
class Params:
    host_id: str
    fence_type: str = FENCE_MANUAL


def validate(params: Params, *, host: Host, running: Sequence[Vm] = ()) -> list[Reason]:
    """`running`: the host's VMs in any of RUNNING_STATUSES. Those powering up or down belong to the
    start or stop that runs them (it settles them when its host call ends); marking one down under
    it would let that command's late answer undo a newer run."""
    found: list[Reason] = []
    if host.status != HOST_UNREACHABLE:
        found.append(R.host_not_unreachable(host.name, host.status))
    changing = [vm for vm in running if vm.status in CHANGING_STATUSES]
    if changing:
        found.append(R.host_vms_changing(host.name, [vm.name for vm in changing]))
    return found


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params) -> Outcome:
    with common.audited(sessions, "HOST_FENCE", host_id=params.host_id), sessions.begin() as s:
        # Locked: the monitor's "answers again" waits, and a start cannot place a VM here meanwhile.
        host = common.load_host_by_id(s, params.host_id, lock=True)
        running = vms.list_on_host(s, host.id, RUNNING_STATUSES)
        found = validate(params, host=host, running=running)
        if found:
            raise common.refusal(found, f"Cannot confirm host {host.name} rebooted.")
        down = [vm.name for vm in running
                if state.vm_stopped(s, vm, f"VM {vm.name} marked down: host {host.name} was confirmed rebooted",
                                    host=host, severity="warning", host_name=host.name)]
        audit.record(s, "HOST_FENCED", f"Host {host.name} confirmed rebooted by an administrator"
                     + (f"; VMs {', '.join(down)} marked down" if down else ""), severity="warning",
                     host_id=host.id, host=host.name, fence_type=params.fence_type, vms=down)
        return Outcome(id=host.id)
