"""Take a host out of maintenance: its capabilities and devices are read again, as a refresh reads
them, and it is up -- watched by the monitor and a place to start VMs. A host that cannot be reached
stays in maintenance."""
from __future__ import annotations

from dataclasses import dataclass

from engine import reasons as R
from engine.commands import common, refresh_host
from engine.commands.outcome import Outcome
from engine.dao.models import Host
from engine.errors import Reason
from engine.hostclient import HostClientFactory
from engine.vocab import HOST_MAINTENANCE


@dataclass(frozen=True)
class Params:
    host_id: str


def validate(params: Params, *, host: Host) -> list[Reason]:
    if host.status != HOST_MAINTENANCE:
        return [R.host_not_in_maintenance(host.name, host.status, f"activate host {host.name}")]
    return []


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params) -> Outcome:
    host = refresh_host.load(sessions, params.host_id)
    with common.audited(sessions, "HOST_ACTIVATE", host_id=host.id):
        found = validate(params, host=host)
        if found:
            raise common.refusal(found, f"Cannot activate host {host.name}.")
    # Judged again on the locked row when the answer is stored: another request may have activated it.
    return refresh_host.refresh(sessions, hosts, host, action="HOST_ACTIVATE", done="HOST_ACTIVATED",
                                check=lambda row: validate(params, host=row), activate=True)
