"""Create a flavor: a VM size and the extra specs that give its VMs devices (flavor_specs).

A flavor's name and id are unique. Two requests may both find a name free; the database's unique
constraint then lets one win and the other is refused with NAME_IN_USE (409), never an internal
error. The canDo reads happen in a transaction of their own, before the insert: on SQLite a
transaction that reads and then writes cannot wait for a concurrent writer, one that starts by
writing can.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine import flavor_specs
from engine import reasons as R
from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common
from engine.commands import flavor_common as F
from engine.commands.add_vm import MEMORY_MB, VCPUS
from engine.commands.outcome import Outcome
from engine.dao import audit, flavors, pci_aliases
from engine.errors import Reason
from engine.hostclient import HostClientFactory

DISK_GB = (0, 1048576)


@dataclass(frozen=True)
class Params:
    name: str
    memory_mb: int
    vcpus: int
    disk_gb: int = 0
    extra_specs: dict[str, Any] | None = None
    is_public: bool = True
    flavor_id: str | None = None        # None: a new uuid


def _between(field: str, value: Any, bounds: tuple[int, int]) -> list[Reason]:
    if isinstance(value, bool) or not isinstance(value, int) or not bounds[0] <= value <= bounds[1]:
        return [R.field_invalid(field, value, f"a whole number between {bounds[0]} and {bounds[1]}")]
    return []


def validate(params: Params, *, name_in_use: bool, id_in_use: bool,
             pci_alias_names: Iterable[str] = ()) -> list[Reason]:
    """canDo of AddFlavor. `pci_alias_names`: the PCI aliases configured."""
    found: list[Reason] = []
    bad_name = common.check_name("flavor", params.name)
    found += bad_name
    if not bad_name and name_in_use:
        found.append(R.name_in_use("flavor", params.name))
    if params.flavor_id is not None:
        if not isinstance(params.flavor_id, str) or not F.ID_RE.match(params.flavor_id):
            found.append(R.field_invalid("id", params.flavor_id, "1-64 letters, digits, '.', '_' or '-'"))
        elif id_in_use:
            found.append(F.flavor_id_in_use(params.flavor_id))
    found += _between("memory_mb", params.memory_mb, MEMORY_MB)
    found += _between("vcpus", params.vcpus, VCPUS)
    found += _between("disk_gb", params.disk_gb, DISK_GB)
    found += flavor_specs.validate(params.extra_specs, pci_alias_names=pci_alias_names)
    return found


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    with common.audited(sessions, "FLAVOR_ADD"):
        with sessions() as s:
            name_in_use = common.name_ok(params.name) and flavors.get_by_name(s, params.name) is not None
            id_in_use = isinstance(params.flavor_id, str) and F.ID_RE.match(params.flavor_id) is not None \
                and flavors.get(s, params.flavor_id) is not None
            alias_names = pci_aliases.names(s)
        found = validate(params, name_in_use=name_in_use, id_in_use=id_in_use, pci_alias_names=alias_names)
        if found:
            raise F.refusal(found, f"Cannot add flavor {params.name}.")
        specs, _ = flavor_specs.normalize(params.extra_specs)
        with sessions.begin() as s:
            flavor = flavors.add(s, name=params.name, memory_mb=params.memory_mb, vcpus=params.vcpus,
                                 disk_gb=params.disk_gb, extra_specs=specs, is_public=params.is_public,
                                 flavor_id=params.flavor_id)
            if flavor is None:     # taken meanwhile
                found = []
                if flavors.get_by_name(s, params.name) is not None:
                    found.append(R.name_in_use("flavor", params.name))
                if params.flavor_id is not None and flavors.get(s, params.flavor_id) is not None:
                    found.append(F.flavor_id_in_use(params.flavor_id))
                raise F.refusal(found or [R.name_in_use("flavor", params.name)],
                                f"Cannot add flavor {params.name}.")
            audit.record(s, "FLAVOR_ADDED", f"Flavor {flavor.name} added ({flavor.memory_mb} MiB, "
                         f"{flavor.vcpus} vCPUs)", flavor=flavor.name, flavor_id=flavor.id,
                         extra_specs=dict(specs))
            return Outcome(id=flavor.id, created=True)
