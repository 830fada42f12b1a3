"""Put a host in maintenance: the monitor stops watching it, no VM is started on it and it may be
removed, until activate_host brings it back. Only a host that runs no VM: they are stopped first.

The host's row is locked while its VMs are counted; a start locks its host's row (shared) while it
places the VM there, so a start and a maintenance never both win."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine import reasons as R
from engine.commands import common
from engine.commands.outcome import Outcome
from engine.dao import audit, hosts as hosts_dao, vms
from engine.dao.models import Host, Vm
from engine.errors import Reason
from engine.hostclient import HostClientFactory
from engine.vocab import HOST_MAINTENANCE, HOST_UNREACHABLE, RUNNING_STATUSES


@dataclass(frozen=True)
class Params:
    host_id: str


def validate(params: Params, *, host: Host, running: Sequence[Vm]) -> list[Reason]:
    """`running`: the VMs with a domain on the host (any of RUNNING_STATUSES)."""
    found: list[Reason] = []
    if host.status == HOST_MAINTENANCE:
        found.append(R.host_in_maintenance(host.name))
    if running:
        found.append(R.host_runs_vms(host.name, [vm.name for vm in running],
                                     unreachable=host.status == HOST_UNREACHABLE))
    return found


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params) -> Outcome:
    with common.audited(sessions, "HOST_MAINTENANCE", host_id=params.host_id), sessions.begin() as s:
        host = common.load_host_by_id(s, params.host_id, lock=True)
        found = validate(params, host=host, running=vms.list_on_host(s, host.id, RUNNING_STATUSES))
        if found:
            raise common.refusal(found, f"Cannot put host {host.name} in maintenance.")
        was = host.status
        hosts_dao.set_status(s, host.id, HOST_MAINTENANCE)
        audit.record(s, "HOST_MAINTENANCE", f"Host {host.name} is in maintenance (it was {was})",
                     host_id=host.id, host=host.name, was=was)
        return Outcome(id=host.id)
