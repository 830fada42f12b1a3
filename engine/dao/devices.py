"""Queries on VM devices and the plug state machine's compare-and-set transitions.

A transition is a single ``UPDATE ... WHERE id=:id AND plug_state=:expected`` whose row count says
whether this caller won; the caller commits it before calling the host. Functions take the session
first and never commit."""
from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, inspect, select
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.util import identity_key

from engine.dao import audit, vm_versions
from engine.dao._cas import KEEP, OneRowUpdate, Prebuilt, RowWrite, rowcount, update_one
from engine.dao.models import VmDevice, new_id, utcnow
from engine.vocab import IN_FLIGHT_STATES, PLUGGING, STABLE, UNPLUGGING

__all__ = ["KEEP", "RowWrite", "TRANSITION_STATES", "alias_for", "add", "get", "list_for_vm",
           "list_in_flight", "begin_transition", "finish_transition", "acknowledge", "mark_unanswered",
           "restart_transition", "set_plugged", "set_address",
           "delete_if_stable", "used_indexes"]

#: The states a transition can be in flight in (begin_transition's `to_state`).
TRANSITION_STATES = IN_FLIGHT_STATES


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


_GET_WITH_NIC = Prebuilt(lambda: select(VmDevice).where(VmDevice.id == bindparam("dev_id"))
                         .options(joinedload(VmDevice.nic)))


def get(s: Session, dev_id: str, *, with_nic: bool = False) -> VmDevice | None:
    """The device; `with_nic` loads its vm_nics row (a NIC's) in the same statement."""
    if with_nic:
        found = s.identity_map.get(identity_key(VmDevice, dev_id))
        if found is None or "nic" in inspect(found).unloaded:
            return s.scalars(_GET_WITH_NIC.statement, {"dev_id": dev_id}).one_or_none()
    return s.get(VmDevice, dev_id)


def holding(s: Session, host_device_id: int) -> VmDevice | None:
    """The hostdev row (of any VM) that stands for host device `host_device_id`: at most one."""
    return s.scalars(select(VmDevice).where(VmDevice.host_device_id == host_device_id)).one_or_none()


def list_for_vm(s: Session, vm_id: str, type: str | None = None,  # noqa: A002
                plugged: bool | None = None) -> Sequence[VmDevice]:
    stmt = select(VmDevice).where(VmDevice.vm_id == vm_id)
    if type is not None:
        stmt = stmt.where(VmDevice.type == type)
    if plugged is not None:
        stmt = stmt.where(VmDevice.is_plugged.is_(plugged))
    return s.scalars(stmt.order_by(VmDevice.created_at, VmDevice.id)).all()


def list_for_vms(s: Session, vm_ids: Collection[str]) -> dict[str, list[VmDevice]]:
    """The devices of several VMs in one statement, with a NIC's vm_nics row, by VM id, each VM's in
    list_for_vm's order."""
    found: dict[str, list[VmDevice]] = {vm_id: [] for vm_id in vm_ids}
    if found:
        stmt = (select(VmDevice).where(VmDevice.vm_id.in_(found)).options(joinedload(VmDevice.nic))
                .order_by(VmDevice.created_at, VmDevice.id))
        for dev in s.scalars(stmt):
            found[dev.vm_id].append(dev)
    return found


def list_in_flight(s: Session, *, vm_id: str | None = None,
                   started_before: datetime | None = None) -> Sequence[VmDevice]:
    """Devices whose plug_state is not stable (for reconciliation), optionally only those whose
    transition started before `started_before`."""
    stmt = select(VmDevice).where(VmDevice.plug_state != STABLE)
    if vm_id is not None:
        stmt = stmt.where(VmDevice.vm_id == vm_id)
    if started_before is not None:
        stmt = stmt.where(VmDevice.plug_started_at < started_before)
    return s.scalars(stmt.order_by(VmDevice.plug_started_at, VmDevice.id)).all()


def unplugging(s: Session, vm_ids: Collection[str]) -> set[tuple[str, str]]:
    """(VM id, alias) of the devices of these VMs that are being unplugged, in one statement that loads
    no ORM object."""
    return {(vm_id, alias) for vm_id, alias in s.execute(_UNPLUGGING.statement, {"vm_ids": list(vm_ids)})}


# Prebuilt: the monitor runs it for every batch of device events.
_UNPLUGGING = Prebuilt(lambda: select(VmDevice.vm_id, VmDevice.alias)
                       .where(VmDevice.vm_id.in_(bindparam("vm_ids", expanding=True)),
                              VmDevice.plug_state == UNPLUGGING))


def begin_transition(s: Session, dev_id: str, to_state: str, *, also: Sequence[RowWrite] = (),
                     unchanged: vm_versions.VmVersion | None = None) -> bool:
    """stable -> plugging|unplugging, as one compare-and-set UPDATE. `is_plugged` becomes the desired
    state at once (True when plugging); the start time is recorded and last_error cleared; `also`
    (writes of rows keyed by the device's id, a claim) are written with it when it wins. False when
    the device is missing or another transition is in flight (nothing is changed then).

    `unchanged` (PostgreSQL): the VM was read without a lock. The same statement then also moves the
    VM's version, as a lock does (vms.lock), only from the one read while the VM still runs there: False,
    and nothing changed, when a transaction that locked the VM committed after the read (or is still
    open: the statement waits for it), or the VM stopped or moved. A lock taken after this statement
    sees the transition."""
    if to_state not in TRANSITION_STATES:
        raise ValueError(f"to_state must be one of {TRANSITION_STATES}, not {to_state!r}")
    values = {"plug_state": to_state, "is_plugged": to_state == PLUGGING, "plug_started_at": utcnow(),
              "plug_acked_at": None, "last_error": None}
    if unchanged is None:
        return _BEGIN(s, dev_id, values, plug_state=STABLE, also=also)
    if s.get_bind().dialect.name != "postgresql":
        raise ValueError("a begin from an unlocked read needs PostgreSQL's data-modifying WITH")
    return _BEGIN_IF_UNCHANGED(s, dev_id, values, plug_state=STABLE, also=also, bound=vm_versions.params(unchanged))


# The transitions' compare-and-set UPDATEs, prebuilt (every plug and unplug runs two of them).
_BEGIN = OneRowUpdate(VmDevice, ("plug_state", "is_plugged", "plug_started_at", "plug_acked_at", "last_error"),
                      guards=("plug_state",))
_BEGIN_IF_UNCHANGED = OneRowUpdate(VmDevice, _BEGIN.set, guards=("plug_state",), condition=vm_versions.unchanged)
_FINISH = OneRowUpdate(VmDevice, ("plug_state", "plug_started_at", "plug_acked_at", "is_plugged", "last_error"),
                       guards=("plug_state",))
_FINISH_ADDRESS = OneRowUpdate(VmDevice, ("plug_state", "plug_started_at", "plug_acked_at", "is_plugged", "last_error",
                                          "address"), guards=("plug_state",))
_SET_PLUGGED = OneRowUpdate(VmDevice, ("is_plugged", "last_error"), guards=("plug_state",))
_SET_PLUGGED_ADDRESS = OneRowUpdate(VmDevice, ("is_plugged", "last_error", "address"), guards=("plug_state",))


def finish_transition(s: Session, dev_id: str, *, from_state: str, is_plugged: bool,
                      address: dict[str, Any] | None | Any = KEEP,
                      error: dict[str, Any] | None = None, event: audit.Event | None = None,
                      also: Sequence[RowWrite] = ()) -> bool:
    """plugging|unplugging -> stable, as one compare-and-set UPDATE on plug_state=`from_state`.

    Sets is_plugged; `address` is stored as given (a dict, or None to clear it) unless KEEP;
    `error` becomes last_error (None clears it); `event` and `also` (writes of rows keyed by the
    device's id) are written with it when it wins. False when the device is missing or is no longer
    in `from_state` (someone else finished it)."""
    if from_state not in TRANSITION_STATES:
        raise ValueError(f"from_state must be one of {TRANSITION_STATES}, not {from_state!r}")
    values: dict[str, Any] = {"plug_state": STABLE, "plug_started_at": None, "plug_acked_at": None,
                              "is_plugged": is_plugged, "last_error": error}
    if address is KEEP:
        return _FINISH(s, dev_id, values, plug_state=from_state, insert=event, also=also)
    return _FINISH_ADDRESS(s, dev_id, {**values, "address": address}, plug_state=from_state, insert=event,
                           also=also)


def acknowledge(s: Session, dev_id: str, *, from_state: str, event: audit.Event | None = None) -> bool:
    """The host took the transition and left it pending in the guest: it stays in flight, acknowledged.
    A compare-and-set on plug_state=`from_state`; `event` is written with it when it wins."""
    return _ACKNOWLEDGE(s, dev_id, {"plug_acked_at": utcnow()}, plug_state=from_state, insert=event)


def mark_unanswered(s: Session, dev_id: str, *, from_state: str, error: dict[str, Any],
                    event: audit.Event | None = None) -> bool:
    """The host call of the transition got no answer: it stays in flight, with `error` as last_error
    (which says so), for reconciliation to settle against the host's truth. A compare-and-set;
    `event` is written with it when it wins."""
    return _UNANSWERED(s, dev_id, {"last_error": error, "plug_acked_at": None}, plug_state=from_state,
                       insert=event)


_ACKNOWLEDGE = OneRowUpdate(VmDevice, ("plug_acked_at",), guards=("plug_state",))
_UNANSWERED = OneRowUpdate(VmDevice, ("last_error", "plug_acked_at"), guards=("plug_state",))


def restart_transition(s: Session, dev_id: str, *, from_state: str) -> bool:
    """The transition is sent to the host again: its clock restarts, unacknowledged, with no error.
    A compare-and-set on plug_state=`from_state`."""
    return update_one(s, VmDevice, dev_id, {"plug_started_at": utcnow(), "plug_acked_at": None, "last_error": None},
                      VmDevice.plug_state == from_state)


def set_plugged(s: Session, dev_id: str, is_plugged: bool, *,
                address: dict[str, Any] | None | Any = KEEP) -> bool:
    """Change the desired state without a host call (VM down), as a compare-and-set on
    plug_state='stable'. False when the device is missing or a transition is in flight."""
    values: dict[str, Any] = {"is_plugged": is_plugged, "last_error": None}
    if address is KEEP:
        return _SET_PLUGGED(s, dev_id, values, plug_state=STABLE)
    return _SET_PLUGGED_ADDRESS(s, dev_id, {**values, "address": address}, plug_state=STABLE)


def delete_if_stable(s: Session, dev_id: str, *, unplugged_only: bool) -> bool:
    """Delete the device (its NIC row follows through ON DELETE CASCADE) unless an operation is in
    flight -- or, with `unplugged_only`, unless it is plugged. A compare-and-set: True when it went."""
    guard = [VmDevice.id == dev_id, VmDevice.plug_state == STABLE]
    if unplugged_only:
        guard.append(VmDevice.is_plugged.is_(False))
    obj = s.identity_map.get(identity_key(VmDevice, dev_id))
    if obj is not None:
        if obj.nic is not None:
            s.expunge(obj.nic)
        s.expunge(obj)
    return rowcount(s.execute(delete(VmDevice).where(*guard).execution_options(synchronize_session=False))) == 1


def set_address(s: Session, dev_id: str, address: dict[str, Any] | None) -> bool:
    """Store the guest address libvirt reported (e.g. after VM.create). True when the row exists."""
    return update_one(s, VmDevice, dev_id, {"address": address})


def used_indexes(s: Session, vm_id: str, device: str) -> list[int]:
    """The controller indexes a VM's `device` controllers (e.g. usb) take, from their spec_params."""
    rows = s.scalars(select(VmDevice).where(VmDevice.vm_id == vm_id, VmDevice.type == "controller",
                                            VmDevice.device == device)).all()
    return sorted({int(r.spec_params["index"]) for r in rows if isinstance((r.spec_params or {}).get("index"), int)})
