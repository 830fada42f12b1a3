"""Add USB controllers to a VM (seed 000: `{"type": "ehci", "count": 2}`), only while it is down: QEMU
cannot hot-plug a USB controller, so on a running VM the canDo refuses before any host is called.

Indexes are unique per VM: a given index is checked, missing ones are the next free. An ICH9 EHCI can
come with its three UHCI companions at the same index (oVirt's layout). The rows are plugged at once
(a controller is part of the VM's definition) and sent with the VM at its next start.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from engine import reasons as R
from engine import usb
from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common
from engine.commands.outcome import Outcome
from engine.dao import audit, devices
from engine.dao.models import Vm
from engine.devices import kinds
from engine.errors import Reason
from engine.hostclient import HostClientFactory
from engine.vocab import DOWN

MAX_COUNT = 8
REQUESTS_KEY = "usb_controller_requests"


@dataclass(frozen=True)
class Params:
    vm_id: str
    model: str
    type: str = "usb"
    count: int = 1
    index: int | None = None
    ports: int | None = None
    companions: bool = False        # an ich9-ehci1 with its three UHCI companions


def validate(params: Params, *, vm: Vm, existing: list[dict[str, Any]]) -> list[Reason]:
    """canDo of AddController. `existing`: the spec_params of the VM's USB controllers."""
    used = sorted({c["index"] for c in existing if isinstance(c.get("index"), int)})
    found: list[Reason] = []
    if vm.status != DOWN:
        found.append(R.not_hotpluggable(kinds.CONTROLLER.label, vm.name))
    if params.type != "usb":
        found.append(R.controller_type_unsupported(params.type))
    model = usb.model_of(params.model)
    if model is None:
        found.append(R.controller_model_unknown(params.model, usb.NAMES))
    if not 1 <= params.count <= MAX_COUNT:
        found.append(R.field_invalid("count", params.count, f"between 1 and {MAX_COUNT}"))
    elif params.index is not None:
        if params.count != 1:
            found.append(R.field_invalid("index", params.index, "give no index when count is more than 1"))
        elif not 0 <= params.index <= usb.MAX_INDEX:
            found.append(R.controller_index_invalid(params.index, usb.MAX_INDEX))
        elif params.index in used:
            found.append(R.controller_index_in_use(params.index, vm.name))
    elif max(usb.next_free(used, params.count)) > usb.MAX_INDEX:
        found.append(R.controller_index_invalid(max(usb.next_free(used, params.count)), usb.MAX_INDEX))
    if params.ports is not None and (model not in usb.XHCI_MODELS or not 1 <= params.ports <= 15):
        found.append(R.field_invalid("ports", params.ports, "1 to 15, on an xHCI model (nec-xhci, qemu-xhci) only"))
    if params.companions and model != "ich9-ehci1":
        found.append(R.field_invalid("companions", True, "UHCI companions go with model ich9-ehci1"))
    if existing and (model == usb.NONE or any(c.get("model") == usb.NONE for c in existing)):
        found.append(R.usb_disabled_alone(vm.name))
    return found


def plan(params: Params, used: list[int]) -> list[usb.Controller]:
    model = usb.model_of(params.model)
    assert model is not None
    indexes = [params.index] if params.index is not None else usb.next_free(used, params.count)
    return usb.layout(model, params.count, indexes, ports=params.ports, companions=params.companions)


def _existing(s: Session, vm: Vm) -> list[dict[str, Any]]:
    return [d.spec_params or {} for d in devices.list_for_vm(s, vm.id, type=kinds.CONTROLLER.type)
            if d.device == "usb"]


def check(s: Session, vm: Vm, params: Params) -> list[Reason]:
    """canDo with its inputs read from the database (what execute checks; nothing changes)."""
    return validate(params, vm=vm, existing=_existing(s, vm))


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    with common.audited(sessions, "CONTROLLER_ADD", vm_id=params.vm_id):
        with sessions.begin() as s:
            vm = common.load_vm(s, principal, params.vm_id, for_update=True)
            found = check(s, vm, params)
            if found:
                raise common.refusal(found, f"Cannot add a USB controller to VM {vm.name}.")
            ids = []
            for controller in plan(params, devices.used_indexes(s, vm.id, "usb")):
                row = devices.add(s, vm.id, type=kinds.CONTROLLER.type, device="usb", is_plugged=True,
                                  spec_params=controller.spec())
                ids.append(row.id)
                audit.record(s, kinds.CONTROLLER.audit("ADDED"), f"{kinds.CONTROLLER.describe(row)} added to VM "
                             f"{vm.name} (applied at its next start)", vm_id=vm.id, device_id=row.id,
                             **controller.spec())
            # Kept as the seed asks: the server's usb_controller_requests metadata (a JSON string, as
            # Nova metadata values are strings).
            requests = json.loads((vm.meta or {}).get(REQUESTS_KEY) or "[]")
            requests.append({"type": params.model, "count": params.count})
            vm.meta = {**(vm.meta or {}), REQUESTS_KEY: json.dumps(requests)}
            return Outcome(id=ids[0], created=True, ids=tuple(ids))
