"""Queries on VMs. Functions take the session first and never commit."""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload

from engine.dao._cas import KEEP, Prebuilt, update_one
from engine.dao import host_devices, pci_devices
from engine.dao.models import VM_STATUSES, Vm

__all__ = ["KEEP", "get", "get_by_name", "list", "list_on_host", "set_status_cas", "set_run_event_seq",
           "set_pcie_ports_base", "delete"]


def get(s: Session, vm_id: str, *, for_update: bool = False, placement: bool = False) -> Vm | None:
    """The VM; `for_update` locks its row until the transaction ends (PostgreSQL; SQLite's IMMEDIATE
    transactions are serialized already). `placement` loads its cluster and host in the same statement
    (then vm.cluster, vm.host and session.get of either read no more)."""
    if not for_update and not placement:
        return s.get(Vm, vm_id)
    return s.scalars(_GET[for_update, placement].statement, {"vm_id": vm_id}).one_or_none()


def _get(for_update: bool, placement: bool) -> Any:
    stmt = select(Vm).where(Vm.id == bindparam("vm_id"))
    if placement:
        stmt = stmt.options(joinedload(Vm.cluster, innerjoin=True), joinedload(Vm.host))
    if for_update:
        stmt = stmt.with_for_update(of=Vm).execution_options(populate_existing=True)
    return stmt


# Prebuilt (a command's first statement): by (for_update, placement).
_GET: dict[tuple[bool, bool], Prebuilt[Any]] = {
    (u, p): Prebuilt(functools.partial(_get, u, p)) for u in (False, True) for p in (False, True)}


def get_by_name(s: Session, name: str) -> Vm | None:
    return s.scalars(select(Vm).where(Vm.name == name)).one_or_none()


def list_on_host(s: Session, host_id: str, statuses: tuple[str, ...] | None = None) -> Sequence[Vm]:
    """VMs whose run_on_host is `host_id`, optionally only in `statuses`."""
    stmt = select(Vm).where(Vm.run_on_host == host_id)
    if statuses is not None:
        stmt = stmt.where(Vm.status.in_(statuses))
    return s.scalars(stmt.order_by(Vm.name)).all()


def set_status_cas(s: Session, vm_id: str, expected: tuple[str, ...], new: str, *,
                   run_on_host: Any = KEEP) -> bool:
    """Compare-and-set the VM's status: one UPDATE ... WHERE id=:id AND status IN :expected.
    `run_on_host` (a host id or None) is written in the same statement unless KEEP.
    True when the row changed; False when the VM is missing or not in an expected status."""
    if new not in VM_STATUSES:
        raise ValueError(f"unknown VM status {new!r}")
    values: dict[str, Any] = {"status": new}
    if run_on_host is not KEEP:
        values["run_on_host"] = run_on_host
    return update_one(s, Vm, vm_id, values, Vm.status.in_(tuple(expected)))


def set_run_event_seq(s: Session, vm_id: str, seq: int | None) -> None:
    """Where the host's event journal stood once the VM's current run had started (None: not running)."""
    update_one(s, Vm, vm_id, {"run_event_seq": seq})


def set_pcie_ports_base(s: Session, vm_id: str, base: int | None) -> None:
    """The q35 root ports of the VM's current run (engine.devices.pcie_ports; None: not running)."""
    update_one(s, Vm, vm_id, {"pcie_ports_base": base})


def delete(s: Session, vm_id: str) -> bool:
    """Delete the VM; the database cascades to its devices and NICs (and releases host devices).
    True when a row was deleted."""
    obj = s.get(Vm, vm_id)
    if obj is None:
        return False
    groups = pci_devices.held_groups(s, vm_id)
    host_devices.release_for_vm(s, vm_id)
    pci_devices.settle(s, groups)       # their IOMMU siblings are free again
    s.delete(obj)
    s.flush()
    return True


def list(s: Session, project_id: str | None = None) -> Sequence[Vm]:  # noqa: A001
    stmt = select(Vm)
    if project_id is not None:
        stmt = stmt.where(Vm.project_id == project_id)
    return s.scalars(stmt.order_by(Vm.name)).all()
