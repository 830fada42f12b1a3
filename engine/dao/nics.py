"""Queries on VM NICs (vm_nics joined to their vm_devices row). Functions take the session first
and never commit."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from engine.dao import devices
from engine.dao._cas import OneRowUpdate, Prebuilt, RowWrite
from engine.dao.models import VmDevice, VmNic

__all__ = ["normalize_mac", "add", "get", "get_by_name", "list_for_vm", "mac_in_use", "mac_taken",
           "claimed_by_another", "name_in_use", "claim_mac", "CLAIM_MAC", "RELEASE_MAC", "used_macs"]

INTERFACE = "interface"


def normalize_mac(mac: str) -> str:
    """MACs are stored lower-case with colons."""
    return mac.strip().lower().replace("-", ":")


def add(s: Session, vm_id: str, *, name: str, mac: str, network: str, model: str = "pv",
        linked: bool = True, is_plugged: bool = True, device: str = "bridge", **device_columns: Any) -> VmNic:
    """Create the interface device (alias ua-<id>) and its NIC row; flushed, `.device` loaded."""
    row = devices.add(s, vm_id, type=INTERFACE, device=device, is_plugged=is_plugged, **device_columns)
    nic = VmNic(id=row.id, vm_id=vm_id, name=name, mac=normalize_mac(mac), network=network, model=model,
                linked=linked)
    nic.device = row
    s.add(nic)
    s.flush()
    return nic


def get(s: Session, vm_id: str, nic_id: str) -> VmNic | None:
    """The NIC `nic_id` of VM `vm_id` (None when missing or belonging to another VM)."""
    return s.scalars(select(VmNic).options(joinedload(VmNic.device))
                     .where(VmNic.id == nic_id, VmNic.vm_id == vm_id)).one_or_none()


def get_by_name(s: Session, vm_id: str, name: str) -> VmNic | None:
    return s.scalars(select(VmNic).options(joinedload(VmNic.device))
                     .where(VmNic.vm_id == vm_id, VmNic.name == name)).one_or_none()


def list_for_vm(s: Session, vm_id: str, plugged: bool | None = None) -> Sequence[VmNic]:
    stmt = (select(VmNic).join(VmNic.device).options(joinedload(VmNic.device))
            .where(VmNic.vm_id == vm_id))
    if plugged is not None:
        stmt = stmt.where(VmDevice.is_plugged.is_(plugged))
    return s.scalars(stmt.order_by(VmNic.name)).all()


def name_in_use(s: Session, vm_id: str, name: str, exclude_nic_id: str | None = None) -> bool:
    stmt = select(VmNic.id).where(VmNic.vm_id == vm_id, VmNic.name == name)
    if exclude_nic_id is not None:
        stmt = stmt.where(VmNic.id != exclude_nic_id)
    return s.scalars(stmt.limit(1)).first() is not None


def mac_in_use(s: Session, mac: str, exclude_nic_id: str | None = None, plugged_only: bool = True) -> bool:
    """Whether another NIC (of any VM) has `mac`. With `plugged_only`, only NICs that claim it
    (plugged or in flight) count, as oVirt allows an unplugged NIC to share a MAC."""
    mac = normalize_mac(mac)
    if plugged_only and exclude_nic_id is not None:      # the check of every plug: prebuilt
        return s.execute(_CLAIMED_BY_OTHER.statement, {"mac": mac, "nic_id": exclude_nic_id}).first() is not None
    stmt = select(VmNic.id).where(VmNic.claimed_mac == mac if plugged_only else VmNic.mac == mac)
    if exclude_nic_id is not None:
        stmt = stmt.where(VmNic.id != exclude_nic_id)
    return s.scalars(stmt.limit(1)).first() is not None


def mac_taken(s: Session, nic: VmNic) -> bool:
    """Whether another NIC claims `nic`'s MAC: as read with the row when its loader asked
    (VmNic.mac_taken), else by a statement of its own."""
    if nic.mac_taken is not None:
        return nic.mac_taken
    return mac_in_use(s, nic.mac, exclude_nic_id=nic.id)


def _claimed_by_other() -> Any:
    table = VmNic.__table__
    return (select(table.c.id).where(table.c.claimed_mac == bindparam("mac"), table.c.id != bindparam("nic_id"))
            .limit(1))


def claimed_by_another(table: Any = None) -> Any:
    """SQL: another NIC claims the MAC of this row of `table` (vm_nics by default). The loaders that
    read a NIC to plug it ask for it as VmNic.mac_taken, so the plug's check costs no statement."""
    table = VmNic.__table__ if table is None else table
    other = table.alias("other")
    return exists().where(other.c.claimed_mac == table.c.mac, other.c.id != table.c.id)


def _mac_free(table: Any) -> Any:
    return ~claimed_by_another(table)


_CLAIMED_BY_OTHER = Prebuilt(_claimed_by_other)
_CLAIM = OneRowUpdate(VmNic, expressions={"claimed_mac": lambda table: table.c.mac}, condition=_mac_free)
#: The MAC claimed by a transition's own statement (devices.state.begin): unguarded, so the unique
#: constraint decides, and a lost claim fails the statement (IntegrityError) and with it the transaction,
#: which the transition refuses whole; one round trip instead of a claim_mac of its own.
CLAIM_MAC = RowWrite(OneRowUpdate(VmNic, expressions={"claimed_mac": lambda table: table.c.mac}), {})
#: The MAC given back: a RowWrite, so that a transition's compare-and-set can carry it (devices.state).
RELEASE_MAC = RowWrite(OneRowUpdate(VmNic, ("claimed_mac",)), {"claimed_mac": None})


def claim_mac(s: Session, nic_id: str) -> bool:
    """The NIC claims its MAC (it is plugged or about to be): False, and nothing changed, when another
    NIC holds that MAC. The UPDATE claims it only if no other NIC holds it; on SQLite, where write
    transactions take turns, that guard decides alone. Elsewhere two concurrent claims may both pass
    it, and the unique constraint lets one win: the other's UPDATE fails, which on PostgreSQL aborts
    its transaction. So a caller refuses its whole transaction when the claim is lost, or takes the
    claim in a savepoint of its own (devices.state.repaired); the commands' claims need none, which
    saves two round trips per plug."""
    try:
        return _CLAIM(s, nic_id)
    except IntegrityError:
        return False


def used_macs(s: Session, first: str, last: str) -> Sequence[str]:
    """Every MAC between `first` and `last` (lower-case colon form sorts like the numbers) that a NIC
    has, in order."""
    return s.scalars(select(VmNic.mac).where(VmNic.mac >= first, VmNic.mac <= last)
                     .distinct().order_by(VmNic.mac)).all()
