"""What the flavor commands (add_flavor, remove_flavor, set_flavor_specs) and add_vm share: the flavor
reasons, the flavor loader and the refusal that tells a bad request from a state that forbids it.

Extra-spec reasons are flavor_specs' own (SPEC_*); the ones here are about flavors as a whole."""
from __future__ import annotations

import re
from typing import Final

from sqlalchemy.orm import Session

from engine.dao import flavors as flavors_dao
from engine.dao.models import Flavor
from engine.errors import NotFound, Reason, ValidationFailed

FLAVOR_NOT_FOUND: Final = "FLAVOR_NOT_FOUND"
FLAVOR_ID_IN_USE: Final = "FLAVOR_ID_IN_USE"
SPEC_NOT_SET: Final = "SPEC_NOT_SET"
# Reason codes that come from the state met, not from what the request says: a refusal holding
# only these is a 409; one with any other reason is a 400 (the request must change anyway).
STATE_REASONS = frozenset({"NAME_IN_USE", FLAVOR_ID_IN_USE})

# Flavor ids are path segments of both APIs: Nova's id syntax without its spaces.
ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")


class InvalidRequest(ValidationFailed):
    """A refusal for what the request says (a field or an extra spec), whatever the state: 400."""

    status = 400
    code = "BAD_REQUEST"


def flavor_not_found(flavor_id: str) -> Reason:
    return Reason(FLAVOR_NOT_FOUND, f"Flavor {flavor_id} does not exist.", {"id": flavor_id})


def flavor_id_in_use(flavor_id: str) -> Reason:
    return Reason(FLAVOR_ID_IN_USE, f"A flavor with id {flavor_id} already exists.", {"id": flavor_id})


def spec_not_set(flavor_id: str, key: str) -> Reason:
    return Reason(SPEC_NOT_SET, f"Flavor {flavor_id} has no extra spec {key}.", {"id": flavor_id, "key": key})


def flavor_usb_ports_short(flavor_name: str, devices: int, machine: str) -> Reason:
    """A flavor without hw:usb_model whose redirection devices outnumber the ports of the machine's
    default USB controller (the code of engine.reasons' no_free_usb_port)."""
    return Reason("NO_FREE_USB_PORT", f"Flavor {flavor_name} gives {devices} USB redirection devices, more than "
                  f"the ports of a {machine} VM's default USB controller: set hw:usb_model (e.g. qemu-xhci) on "
                  "the flavor.", {"flavor": flavor_name, "devices": devices, "machine": machine})


def refusal(reasons: list[Reason], message: str) -> ValidationFailed:
    """409 (ACTION_NOT_ALLOWED) when only the state is in the way, else 400 (BAD_REQUEST): every
    reason is attached either way."""
    if all(r.code in STATE_REASONS for r in reasons):
        return ValidationFailed(message, reasons=reasons)
    return InvalidRequest(message, reasons=reasons)


def load_flavor(s: Session, flavor_id: str, *, for_update: bool = False) -> Flavor:
    flavor = (flavors_dao.get_for_update if for_update else flavors_dao.get)(s, flavor_id)
    if flavor is None:
        raise NotFound(f"Flavor {flavor_id} does not exist.", reasons=[flavor_not_found(flavor_id)])
    return flavor

