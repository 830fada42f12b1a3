"""Queries on VMs. Functions take the session first and never commit."""
from __future__ import annotations

import builtins
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import Session, joinedload

from engine.dao._cas import KEEP, Prebuilt, update_one
from engine.dao import host_devices, nics, pci_devices, vm_versions
from engine.dao.models import VM_STATUSES, Vm, VmDevice, VmNic

__all__ = ["KEEP", "get", "lock", "get_many", "get_with_device", "get_with_device_by_alias", "get_by_name", "list",
           "list_on_host", "list_on_hosts", "set_status_cas", "set_run_event_seq", "set_pcie_ports_base", "delete"]


def get(s: Session, vm_id: str, *, for_update: bool = False) -> Vm | None:
    """The VM; `for_update` locks it (lock) and reads it after the lock is held."""
    if not for_update:
        return s.get(Vm, vm_id)
    lock(s, vm_id)
    return s.scalars(_GET_FOR_UPDATE.statement, {"vm_id": vm_id}).one_or_none()


def lock(s: Session, vm_id: str) -> None:
    """Lock the VM until the transaction ends (its row, on PostgreSQL; SQLite's IMMEDIATE transactions
    are serialized already) and move the version of its device set (vms.device_seq): a plug that read
    the VM without a lock before this transaction committed does not begin (devices.begin_transition's
    `unchanged`). Taken first, so that what the transaction reads next is read with the lock held."""
    s.execute(_LOCK.statement, {"vm_id": vm_id})


def get_many(s: Session, vm_ids: Sequence[str]) -> dict[str, Vm]:
    """The VMs of `vm_ids` that exist, by id, in one statement."""
    return {vm.id: vm for vm in s.scalars(select(Vm).where(Vm.id.in_(vm_ids)))} if vm_ids else {}


def get_with_device(s: Session, vm_id: str, device_id: str, *,
                    locked: bool = True) -> tuple[Vm | None, VmDevice | None]:
    """What a plug or unplug loads, in one statement (prebuilt) after the lock (`locked`: as
    `get(for_update=True)` takes it): the VM with its cluster and host, and its device
    `device_id` with a NIC's vm_nics row and whether another NIC claims its MAC (VmNic.mac_taken).
    (None, None) when there is no such VM, (vm, None) when it has no such device."""
    if locked:
        lock(s, vm_id)
    statement = (_GET_WITH_DEVICE if locked else _READ_WITH_DEVICE).statement
    row = s.execute(statement, {"vm_id": vm_id, "device_id": device_id}).first()
    return (None, None) if row is None else (row[0], row[1])


def get_with_device_by_alias(s: Session, vm_id: str, alias: str) -> tuple[Vm | None, VmDevice | None]:
    """The VM and its device by alias, with a NIC's vm_nics row, in one statement (prebuilt): what the
    monitor's every device event reads. Leaner than get_with_device: the host is the one reporting
    the event, and the VM's cluster and other NICs' claims do not matter to it."""
    row = s.execute(_GET_WITH_ALIAS.statement, {"vm_id": vm_id, "alias": alias}).first()
    return (None, None) if row is None else (row[0], row[1])


def _with_device(device: Any) -> Any:
    return (select(Vm, VmDevice).outerjoin(VmDevice, and_(VmDevice.vm_id == Vm.id, device))
            .where(Vm.id == bindparam("vm_id")))


# Prebuilt: the first statement of most commands; plug and unplug's, with their device; a device event's.
_GET_FOR_UPDATE = Prebuilt(lambda: select(Vm).where(Vm.id == bindparam("vm_id")).with_for_update()
                           .execution_options(populate_existing=True))


def _plug_load() -> Any:
    return (_with_device(VmDevice.id == bindparam("device_id"))
            .options(joinedload(Vm.cluster, innerjoin=True), joinedload(Vm.host),
                     joinedload(VmDevice.nic).with_expression(VmNic.mac_taken, nics.claimed_by_another()))
            .execution_options(populate_existing=True))


_LOCK = Prebuilt(vm_versions.lock)
_GET_WITH_DEVICE = Prebuilt(lambda: _plug_load().with_for_update(of=Vm))
_READ_WITH_DEVICE = Prebuilt(_plug_load)
_GET_WITH_ALIAS = Prebuilt(lambda: _with_device(VmDevice.alias == bindparam("alias"))
                           .options(joinedload(VmDevice.nic)))


def get_by_name(s: Session, name: str) -> Vm | None:
    return s.scalars(select(Vm).where(Vm.name == name)).one_or_none()


def list_on_host(s: Session, host_id: str, statuses: tuple[str, ...] | None = None) -> Sequence[Vm]:
    """VMs whose run_on_host is `host_id`, optionally only in `statuses`."""
    stmt = select(Vm).where(Vm.run_on_host == host_id)
    if statuses is not None:
        stmt = stmt.where(Vm.status.in_(statuses))
    return s.scalars(stmt.order_by(Vm.name)).all()


def list_on_hosts(s: Session, host_ids: Sequence[str], statuses: tuple[str, ...]) -> dict[str, builtins.list[Vm]]:
    """list_on_host for several hosts in one statement, by host id."""
    found: dict[str, builtins.list[Vm]] = {host_id: [] for host_id in host_ids}
    if found:
        for vm in s.scalars(select(Vm).where(Vm.run_on_host.in_(tuple(found)), Vm.status.in_(statuses))
                            .order_by(Vm.name)):
            found[vm.run_on_host].append(vm)      # type: ignore[index]   # the WHERE makes it a host id
    return found


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


#: The most VMs one listing answers (Nova's osapi_max_limit): a page, not the whole fleet.
PAGE_MAX = 1000


def list(s: Session, project_id: str | None = None, *, projects: Collection[str] | None = None,  # noqa: A001
         after_name: str | None = None, limit: int | None = None) -> Sequence[Vm]:
    """VMs by name, optionally of one project, of `projects` only (None: all), after the VM named
    `after_name` (a page's marker) and at most `limit` of them."""
    stmt = select(Vm)
    if project_id is not None:
        stmt = stmt.where(Vm.project_id == project_id)
    if projects is not None:
        stmt = stmt.where(Vm.project_id.in_(sorted(projects)))
    if after_name is not None:
        stmt = stmt.where(Vm.name > after_name)
    if limit is not None:
        stmt = stmt.limit(limit)
    return s.scalars(stmt.order_by(Vm.name)).all()
