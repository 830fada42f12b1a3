"""Set, replace or unset a flavor's extra specs (Nova's os-extra_specs, the native PUT/PATCH).

The specs are validated as a whole after the change (flavor_specs' rules span keys: hw:usb_model=none
cannot go with redirection devices). The change applies to VMs created afterwards; a VM's devices
were made from the specs it was created with, as Nova's instances keep the flavor they booted with.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine import flavor_specs
from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common
from engine.commands import flavor_common as F
from engine.commands.outcome import Outcome
from engine.dao import audit, flavors, pci_aliases
from engine.dao.models import Flavor
from engine.errors import NotFound, Reason
from engine.hostclient import HostClientFactory


@dataclass(frozen=True)
class Params:
    flavor_id: str
    specs: dict[str, Any] = field(default_factory=dict)   # keys to add or change
    unset: tuple[str, ...] = ()                          # keys to remove; each must be set
    replace: bool = False                                # the flavor's specs become exactly `specs`


def merged(params: Params, current: Mapping[str, Any]) -> dict[str, Any]:
    """The specs the flavor would have after the change."""
    result = {} if params.replace else dict(current)
    result.update(params.specs or {})
    for key in params.unset:
        result.pop(key, None)
    return result


def validate(params: Params, *, flavor: Flavor, pci_alias_names: Iterable[str] = ()) -> list[Reason]:
    """`pci_alias_names`: the PCI aliases configured (a request naming another is refused)."""
    if not isinstance(params.specs, Mapping):
        return [flavor_specs.value_invalid("extra_specs", params.specs, "an object of key/value pairs")]
    return flavor_specs.validate(merged(params, flavor.extra_specs or {}), pci_alias_names=pci_alias_names)


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    with common.audited(sessions, "FLAVOR_SPECS_SET"):
        with sessions.begin() as s:
            flavor = F.load_flavor(s, params.flavor_id, for_update=True)
            missing = [key for key in params.unset if key not in (flavor.extra_specs or {})]
            if missing:
                raise NotFound(f"Flavor {flavor.id} has no extra spec {', '.join(missing)}.",
                               reasons=[F.spec_not_set(flavor.id, key) for key in missing])
            found = validate(params, flavor=flavor, pci_alias_names=pci_aliases.names(s))
            if found:
                raise F.refusal(found, f"Cannot set the extra specs of flavor {flavor.name}.")
            specs, _ = flavor_specs.normalize(merged(params, flavor.extra_specs or {}))
            flavors.set_extra_specs(s, flavor, specs)
            audit.record(s, "FLAVOR_SPECS_SET", f"Extra specs of flavor {flavor.name} set", flavor=flavor.name,
                         flavor_id=flavor.id, extra_specs=dict(specs))
            return Outcome(id=flavor.id)
