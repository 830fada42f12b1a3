"""Queries on VM devices and the plug state machine's compare-and-set transitions.

A transition is a single ``UPDATE ... WHERE id=:id AND plug_state=:expected`` whose row count says
whether this caller won; the caller commits it before calling the host. Functions take the session
first and never commit."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine.dao._cas import KEEP, reload_if_loaded
from engine.dao.models import VmDevice, new_id, utcnow

__all__ = ["KEEP", "TRANSITION_STATES", "alias_for", "add", "get", "get_by_alias", "list_for_vm",
           "list_in_flight", "begin_transition", "finish_transition", "set_plugged", "set_address"]

#: The states a transition can be in flight in (begin_transition's `to_state`).
TRANSITION_STATES = ("plugging", "unplugging")


def alias_for(device_id: str) -> str:
    """The libvirt user alias of a device: deterministic, so the host and the engine agree on it."""
    return f"ua-{device_id}"


def add(s: Session, vm_id: str, *, type: str, device: str, is_plugged: bool = True,  # noqa: A002
        device_id: str | None = None, **columns: Any) -> VmDevice:
    """Create a device row with its alias (ua-<id>) and flush it."""
    device_id = device_id or new_id()
    row = VmDevice(id=device_id, vm_id=vm_id, type=type, device=device, is_plugged=is_plugged,
                   alias=alias_for(device_id), **columns)
    s.add(row)
    s.flush()
    return row


def get(s: Session, dev_id: str) -> VmDevice | None:
    return s.get(VmDevice, dev_id)


def get_by_alias(s: Session, vm_id: str, alias: str) -> VmDevice | None:
    return s.scalars(select(VmDevice).where(VmDevice.vm_id == vm_id, VmDevice.alias == alias)).one_or_none()


def list_for_vm(s: Session, vm_id: str, type: str | None = None,  # noqa: A002
                plugged: bool | None = None) -> Sequence[VmDevice]:
    stmt = select(VmDevice).where(VmDevice.vm_id == vm_id)
    if type is not None:
        stmt = stmt.where(VmDevice.type == type)
    if plugged is not None:
        stmt = stmt.where(VmDevice.is_plugged.is_(plugged))
    return s.scalars(stmt.order_by(VmDevice.created_at, VmDevice.id)).all()


def list_in_flight(s: Session, *, vm_id: str | None = None,
                   started_before: datetime | None = None) -> Sequence[VmDevice]:
    """Devices whose plug_state is not stable (for reconciliation), optionally only those whose
    transition started before `started_before`."""
    stmt = select(VmDevice).where(VmDevice.plug_state != "stable")
    if vm_id is not None:
        stmt = stmt.where(VmDevice.vm_id == vm_id)
    if started_before is not None:
        stmt = stmt.where(VmDevice.plug_started_at < started_before)
    return s.scalars(stmt.order_by(VmDevice.plug_started_at, VmDevice.id)).all()


def begin_transition(s: Session, dev_id: str, to_state: str) -> bool:
    """stable -> plugging|unplugging, as one compare-and-set UPDATE. Records the start time and
    clears last_error. False when the device is missing or another transition is in flight (nothing
    is changed then)."""
    if to_state not in TRANSITION_STATES:
        raise ValueError(f"to_state must be one of {TRANSITION_STATES}, not {to_state!r}")
    result = s.execute(
        update(VmDevice).where(VmDevice.id == dev_id, VmDevice.plug_state == "stable")
        .values(plug_state=to_state, plug_started_at=utcnow(), last_error=None)
        .execution_options(synchronize_session=False))
    reload_if_loaded(s, VmDevice, dev_id)
    return result.rowcount == 1


def finish_transition(s: Session, dev_id: str, *, from_state: str, is_plugged: bool,
                      address: dict[str, Any] | None | Any = KEEP,
                      error: dict[str, Any] | None = None) -> bool:
    """plugging|unplugging -> stable, as one compare-and-set UPDATE on plug_state=`from_state`.

    Sets is_plugged; `address` is stored as given (a dict, or None to clear it) unless KEEP;
    `error` becomes last_error (None clears it). False when the device is missing or is no longer
    in `from_state` (someone else finished it)."""
    if from_state not in TRANSITION_STATES:
        raise ValueError(f"from_state must be one of {TRANSITION_STATES}, not {from_state!r}")
    values: dict[str, Any] = {"plug_state": "stable", "plug_started_at": None, "is_plugged": is_plugged,
                              "last_error": error}
    if address is not KEEP:
        values["address"] = address
    result = s.execute(
        update(VmDevice).where(VmDevice.id == dev_id, VmDevice.plug_state == from_state)
        .values(**values).execution_options(synchronize_session=False))
    reload_if_loaded(s, VmDevice, dev_id)
    return result.rowcount == 1


def set_plugged(s: Session, dev_id: str, is_plugged: bool, *,
                address: dict[str, Any] | None | Any = KEEP) -> bool:
    """Change the desired state without a host call (VM down), as a compare-and-set on
    plug_state='stable'. False when the device is missing or a transition is in flight."""
    values: dict[str, Any] = {"is_plugged": is_plugged, "last_error": None}
    if address is not KEEP:
        values["address"] = address
    result = s.execute(
        update(VmDevice).where(VmDevice.id == dev_id, VmDevice.plug_state == "stable")
        .values(**values).execution_options(synchronize_session=False))
    reload_if_loaded(s, VmDevice, dev_id)
    return result.rowcount == 1


def set_address(s: Session, dev_id: str, address: dict[str, Any] | None) -> bool:
    """Store the guest address libvirt reported (e.g. after VM.create). True when the row exists."""
    result = s.execute(update(VmDevice).where(VmDevice.id == dev_id).values(address=address)
                       .execution_options(synchronize_session=False))
    reload_if_loaded(s, VmDevice, dev_id)
    return result.rowcount == 1
