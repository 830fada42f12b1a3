"""A host's device inventory (USB devices, PCI functions) and the claims VMs hold on them.

A claim is a compare-and-set, ``UPDATE ... WHERE id=:id AND status='available'``: two requests can
never get one device. Functions take the session first and never commit."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from engine.dao._cas import update_one
from engine.dao.models import HostDevice
from engine.vocab import ALLOCATED, AVAILABLE, CLAIMED, REMOVED

__all__ = ["InventoryChange", "from_agent", "upsert_inventory", "get", "get_by_name", "list_for_host",
           "list_for_vm", "claim", "allocate", "release", "release_for_vm"]

#: Agent field (Host.hostdevListByCaps, camelCase) -> column.
_AGENT_KEYS = {
    "name": "name", "capability": "capability", "vendorId": "vendor_id", "productId": "product_id",
    "vendorName": "vendor_name", "productName": "product_name", "bus": "bus", "device": "device",
    "portPath": "port_path", "serial": "serial", "pciAddress": "pci_address", "iommuGroup": "iommu_group",
    "driver": "driver", "parent": "parent", "allowed": "allowed",
}
#: Columns the inventory describes (the host's facts); status and vm_id are the engine's.
INVENTORY_COLUMNS = tuple(_AGENT_KEYS.values())
HELD = (CLAIMED, ALLOCATED)


@dataclass
class InventoryChange:
    added: list[str] = field(default_factory=list)      # node-device names
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    returned: list[str] = field(default_factory=list)   # were 'removed', seen again


def from_agent(item: Mapping[str, Any]) -> dict[str, Any]:
    """One device as the agent reports it (camelCase) or as columns (snake_case) -> columns."""
    out: dict[str, Any] = {}
    for key, value in item.items():
        column = _AGENT_KEYS.get(key, key)
        if column in INVENTORY_COLUMNS:
            out[column] = value
    missing = {"name", "capability", "vendor_id", "product_id"} - out.keys()
    if missing:
        raise ValueError(f"host device {item.get('name')!r} lacks {sorted(missing)}")
    return out


def upsert_inventory(s: Session, host_id: str, inventory: Iterable[Mapping[str, Any]]) -> InventoryChange:
    """Bring the host's rows to the inventory just read from it: new devices are added as available,
    known ones get their facts updated (claims untouched), devices seen again after being removed
    become available, and devices no longer reported are marked removed (a claim keeps its vm_id
    so the VM's owner can see what disappeared)."""
    change = InventoryChange()
    rows = {row.name: row for row in s.scalars(select(HostDevice).where(HostDevice.host_id == host_id))}
    seen: set[str] = set()
    for item in inventory:
        facts = from_agent(item)
        name = facts["name"]
        if name in seen:
            raise ValueError(f"host device {name!r} reported twice")
        seen.add(name)
        row = rows.get(name)
        if row is None:
            s.add(HostDevice(host_id=host_id, status=AVAILABLE, **facts))
            change.added.append(name)
            continue
        if row.status == REMOVED:
            row.status = AVAILABLE
            row.vm_id = None
            change.returned.append(name)
        if any(getattr(row, k) != v for k, v in facts.items()):
            for k, v in facts.items():
                setattr(row, k, v)
            change.updated.append(name)
    for name, row in rows.items():
        if name not in seen and row.status != REMOVED:
            row.status = REMOVED
            change.removed.append(name)
    s.flush()
    return change


def get(s: Session, dev_id: str) -> HostDevice | None:
    return s.get(HostDevice, dev_id)


def get_by_name(s: Session, host_id: str, name: str) -> HostDevice | None:
    return s.scalars(select(HostDevice).where(HostDevice.host_id == host_id,
                                              HostDevice.name == name)).one_or_none()


def list_for_host(s: Session, host_id: str, capability: str | None = None, status: str | None = None,
                  allowed: bool | None = None) -> Sequence[HostDevice]:
    stmt = select(HostDevice).where(HostDevice.host_id == host_id)
    if capability is not None:
        stmt = stmt.where(HostDevice.capability == capability)
    if status is not None:
        stmt = stmt.where(HostDevice.status == status)
    if allowed is not None:
        stmt = stmt.where(HostDevice.allowed.is_(allowed))
    return s.scalars(stmt.order_by(HostDevice.name)).all()


def list_for_vm(s: Session, vm_id: str) -> Sequence[HostDevice]:
    return s.scalars(select(HostDevice).where(HostDevice.vm_id == vm_id).order_by(HostDevice.name)).all()


def _cas(s: Session, dev_id: str, where: Sequence[Any], values: dict[str, Any]) -> bool:
    return update_one(s, HostDevice, dev_id, values, *where)


def claim(s: Session, dev_id: str, vm_id: str) -> bool:
    """available -> claimed by `vm_id`. False when the device is missing or not available."""
    return _cas(s, dev_id, [HostDevice.status == AVAILABLE], {"status": CLAIMED, "vm_id": vm_id})


def allocate(s: Session, dev_id: str, vm_id: str) -> bool:
    """claimed -> allocated (attached to the running VM), only by the VM that claimed it."""
    return _cas(s, dev_id, [HostDevice.status == CLAIMED, HostDevice.vm_id == vm_id],
                {"status": ALLOCATED})


def release(s: Session, dev_id: str, vm_id: str) -> bool:
    """claimed|allocated by `vm_id` -> available. False when `vm_id` does not hold it."""
    return _cas(s, dev_id, [HostDevice.status.in_(HELD), HostDevice.vm_id == vm_id],
                {"status": AVAILABLE, "vm_id": None})


def release_for_vm(s: Session, vm_id: str) -> int:
    """Release every device `vm_id` holds; returns how many."""
    released = s.scalars(update(HostDevice).where(HostDevice.vm_id == vm_id, HostDevice.status.in_(HELD))
                         .values(status=AVAILABLE, vm_id=None).returning(HostDevice.id)
                         .execution_options(synchronize_session=False)).all()
    for dev_id in released:     # copies the session holds are read again when next used
        if (obj := s.identity_map.get(identity_key(HostDevice, dev_id))) is not None:
            s.expire(obj)
    return len(released)
