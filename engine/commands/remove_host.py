"""Remove a host in maintenance. Its device inventory goes with it; VMs that last ran there keep
their devices. Refused while a VM holds one of its devices or has one among its devices: the VM
would lose the device without a word.

The host's row and its devices' rows are locked while they are checked: a claim of one of its
devices waits, then finds it gone."""
from __future__ import annotations

from dataclasses import dataclass


from engine import reasons as R
from engine.commands import common
from engine.commands.outcome import Outcome
from engine.dao import audit, host_devices, hosts as hosts_dao
from engine.dao.models import Host
from engine.errors import Reason
from engine.hostclient import HostClientFactory
from engine.vocab import HOST_MAINTENANCE


@dataclass(frozen=True)
class Params:
    host_id: str


def validate(params: Params, *, host: Host, held: list[tuple[str, str]]) -> list[Reason]:
    """`held`: (device name, VM name) of the host's devices that VMs hold or have."""
    found: list[Reason] = []
    if host.status != HOST_MAINTENANCE:
        found.append(R.host_not_in_maintenance(host.name, host.status, f"remove host {host.name}",
                                               hint="put it in maintenance first"))
    if held:
        found.append(R.host_devices_held(host.name, held))
    return found


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params) -> Outcome:
    with common.audited(sessions, "HOST_REMOVE", host_id=params.host_id), sessions.begin() as s:
        # The host row before its device rows, in the order a refresh, an activate and the monitor's
        # inventory take them: a refresh of the host waits for the removal, then finds it gone.
        host = common.load_host_by_id(s, params.host_id, lock=True)
        found = validate(params, host=host, held=host_devices.held_on_host(s, host.id))
        if found:
            raise common.refusal(found, f"Cannot remove host {host.name}.")
        name = host.name
        hosts_dao.delete(s, host.id)
        audit.record(s, "HOST_REMOVED", f"Host {name} removed", host_id=params.host_id, host=name)
        return Outcome(id=params.host_id)
