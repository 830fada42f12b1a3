"""Remove a flavor. VMs created from it keep their size, their devices and the flavor's id (as Nova
instances keep their embedded flavor): a flavor is a template, read once when a VM is created."""
from __future__ import annotations

from dataclasses import dataclass

from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common
from engine.commands import flavor_common as F
from engine.commands.outcome import Outcome
from engine.dao import audit, flavors
from engine.hostclient import HostClientFactory


@dataclass(frozen=True)
class Params:
    flavor_id: str


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    with sessions.begin() as s:
        flavor = F.load_flavor(s, params.flavor_id)
        name = flavor.name
        flavors.delete(s, flavor.id)
        audit.record(s, "FLAVOR_REMOVED", f"Flavor {name} removed", flavor=name, flavor_id=params.flavor_id)
        return Outcome(id=params.flavor_id)
