"""PCI functions of the hosts' inventories (host_devices rows of capability pci): placement by alias
and IOMMU groups. Functions take the session first and never commit.

Placement is one grouped query over the inventory, whatever the number of hosts: the free devices
whose ids some requested alias names are counted per host, each alias on its own and all of them
together (a device two aliases could take is not counted twice), and the hosts with enough of each
come back least loaded first. No per-host loop and no copies of a host's pools, as Nova's PCI filter
makes for every request.

IOMMU groups: the kernel hands a group to one owner, so a device can go to a VM only when every other
member of its group is free and assignable or already that VM's (a PCIe bridge sharing the group does
not count). While a member is held, its free siblings are `unavailable` (settle_groups)."""
from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import ColumnElement, CursorResult, Select, and_, case, exists, false, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from engine.dao.host_devices import FREE_STATUS, HELD
from engine.dao.models import Host, HostDevice, Vm
from engine.vocab import AVAILABLE, UNAVAILABLE

PCI = "pci"
# Drivers of members that never stop a group from being assigned: PCIe ports and bridges (the kernel
# allows them in a group it hands to a VM), and devices already given to VFIO or held by pci-stub.
BRIDGE_DRIVERS = ("pcieport", "shpchp")
# Free to take: available (so whitelisted, present, and with no held sibling).
_FREE = (HostDevice.capability == PCI, HostDevice.status == AVAILABLE, HostDevice.present.is_(True),
         HostDevice.allowed.is_(True))

Pairs = Mapping[str, Sequence[tuple[str, str]]]     # alias name -> its (vendor_id, product_id) pairs


class PciRequest(Protocol):
    """`count` devices of alias `alias` (engine.pci_aliases.PciRequest)."""

    @property
    def alias(self) -> str: ...
    @property
    def count(self) -> int: ...


def _is(pairs: Iterable[tuple[str, str]]) -> ColumnElement[bool]:
    terms = [and_(HostDevice.vendor_id == v, HostDevice.product_id == p) for v, p in pairs]
    return or_(*terms) if terms else false()


def _wanted(wants: Sequence[PciRequest], pairs: Pairs) -> ColumnElement[bool]:
    return _is({pair for w in wants for pair in pairs.get(w.alias, ())})


def _tallies(wants: Sequence[PciRequest], pairs: Pairs) -> list[ColumnElement[int]]:
    return [func.sum(case((_is(pairs.get(w.alias, ())), 1), else_=0)) for w in wants]


def hosts_with_free(s: Session, wants: Sequence[PciRequest], pairs: Pairs, *, cluster_id: str, host_status: str,
                    running_statuses: tuple[str, ...], host_id: str | None = None,
                    limit: int | None = None) -> list[Host]:
    """Hosts of `cluster_id` in `host_status` (only `host_id` when given) with enough free devices for
    every request, least loaded first (then by name; the first `limit`): one grouped query."""
    if not wants:
        return []
    requests = tuple((w.alias, w.count) for w in wants)
    ids = tuple((w.alias, tuple(pairs.get(w.alias, ()))) for w in wants)
    return list(s.scalars(_placement(requests, ids, cluster_id, host_status, tuple(running_statuses), host_id,
                                     limit)))


@dataclass(frozen=True)
class _Request:
    alias: str
    count: int


@functools.lru_cache(maxsize=128)
def _placement(requests: tuple[tuple[str, int], ...], ids: tuple[tuple[str, tuple[tuple[str, str], ...]], ...],
               cluster_id: str, host_status: str, running_statuses: tuple[str, ...], host_id: str | None,
               limit: int | None) -> Select[tuple[Host]]:
    """hosts_with_free's statement, built once for each request: building it costs as much as running
    it on a small fleet, and a statement is immutable (any session, any thread may run it)."""
    wants = [_Request(*r) for r in requests]
    pairs = dict(ids)
    counted = (select(HostDevice.host_id.label("host_id"))
               .where(*_FREE, _wanted(wants, pairs))
               .group_by(HostDevice.host_id)
               .having(and_(func.count() >= sum(w.count for w in wants),
                            *[t >= w.count for t, w in zip(_tallies(wants, pairs), wants)])))
    if host_id is not None:
        counted = counted.where(HostDevice.host_id == host_id)
    sub = counted.subquery()
    load = (select(func.count()).where(Vm.run_on_host == Host.id, Vm.status.in_(running_statuses))
            .correlate(Host).scalar_subquery().label("load"))
    # The candidates are ranked on narrow rows (id, load, name); only the best are read whole.
    best = (select(Host.id, load, Host.name).join(sub, sub.c.host_id == Host.id)
            .where(Host.cluster_id == cluster_id, Host.status == host_status)
            .order_by(load, Host.name))
    if limit is not None:
        best = best.limit(limit)
    ranked = best.subquery()
    return select(Host).join(ranked, ranked.c.id == Host.id).order_by(ranked.c.load, ranked.c.name)


def free_counts(s: Session, wants: Sequence[PciRequest], pairs: Pairs, host_ids: Sequence[str]) -> list[int]:
    """For each request, the most devices free for it on any one of `host_ids` (what a refusal names)."""
    if not wants or not host_ids:
        return [0] * len(wants)
    rows = s.execute(select(*_tallies(wants, pairs)).where(HostDevice.host_id.in_(tuple(host_ids)), *_FREE)
                     .group_by(HostDevice.host_id)).all()
    return [max((int(row[i] or 0) for row in rows), default=0) for i in range(len(wants))]


def free_on_host(s: Session, host_id: str, wants: Sequence[PciRequest], pairs: Pairs) -> Sequence[HostDevice]:
    """The host's free devices some request's alias names, by PCI address (as the database has them
    now, even those the session read before: see `lock`)."""
    return s.scalars(select(HostDevice).where(HostDevice.host_id == host_id, *_FREE, _wanted(wants, pairs))
                     .order_by(HostDevice.pci_address, HostDevice.id)
                     .execution_options(populate_existing=True)).all()


def lock(s: Session, host_id: str, devs: Iterable[HostDevice]) -> set[int]:
    """Lock the rows a claim of `devs` may change -- the devices and every member of their IOMMU
    groups -- in id order, until the transaction (or its savepoint) ends; returns their ids. Two
    claims on one host's devices then wait for each other and the second reads what the first
    wrote, instead of both finding a device, or two members of one group, free (PostgreSQL, READ
    COMMITTED; SQLite has no row locks, and its IMMEDIATE transactions are serialized whole)."""
    devs = list(devs)
    which: ColumnElement[bool] = HostDevice.id.in_(sorted({d.id for d in devs}))
    groups = sorted({d.iommu_group for d in devs if d.iommu_group is not None})
    if groups:
        which = or_(which, HostDevice.iommu_group.in_(groups))
    return set(s.scalars(select(HostDevice.id).where(HostDevice.host_id == host_id, HostDevice.capability == PCI,
                                                     which).order_by(HostDevice.id).with_for_update()))


def group_members(s: Session, dev: HostDevice) -> Sequence[HostDevice]:
    """The other PCI functions of the device's IOMMU group on its host (none when it has no group)."""
    if dev.iommu_group is None:
        return []
    return s.scalars(select(HostDevice).where(HostDevice.host_id == dev.host_id, HostDevice.capability == PCI,
                                              HostDevice.iommu_group == dev.iommu_group,
                                              HostDevice.id != dev.id, HostDevice.present.is_(True))
                     .order_by(HostDevice.pci_address).execution_options(populate_existing=True)).all()


def group_blockers(s: Session, dev: HostDevice, vm_id: str, *, taking: Iterable[int] = ()) -> list[HostDevice]:
    """The members of the device's group that keep it from going to `vm_id`: held by another VM, or
    neither free nor assignable -- unless they are bridges, the VM's already, or among `taking` (the
    devices the same request takes)."""
    along = set(taking)
    return [m for m in group_members(s, dev)
            if m.id not in along and m.driver not in BRIDGE_DRIVERS and m.vm_id != vm_id
            and not (m.status == AVAILABLE or (m.status == UNAVAILABLE and m.allowed and m.vm_id is None))]


def settle_groups(s: Session, host_id: str, groups: Iterable[int] | None = None) -> int:
    """The free PCI functions of the host's IOMMU groups (all, or `groups`) get the status their group
    gives them: unavailable while a sibling is held by a VM, else what any free device is (available,
    unavailable when not whitelisted, removed when gone). Returns how many rows changed."""
    sibling = aliased(HostDevice)
    held = exists().where(sibling.host_id == HostDevice.host_id, sibling.capability == PCI,
                          sibling.iommu_group == HostDevice.iommu_group, sibling.id != HostDevice.id,
                          sibling.status.in_(HELD))
    status = case((and_(HostDevice.present.is_(True), held), UNAVAILABLE), else_=FREE_STATUS)
    stmt = (update(HostDevice).where(HostDevice.host_id == host_id, HostDevice.capability == PCI,
                                     HostDevice.iommu_group.is_not(None), HostDevice.vm_id.is_(None),
                                     HostDevice.status.not_in(HELD), HostDevice.status != status)
            .values(status=status).execution_options(synchronize_session="fetch"))
    if groups is not None:
        wanted = sorted(set(groups))
        if not wanted:
            return 0
        stmt = stmt.where(HostDevice.iommu_group.in_(wanted))
    result: CursorResult[Any] = s.execute(stmt)   # type: ignore[assignment]
    return result.rowcount or 0


def held_groups(s: Session, vm_id: str) -> set[tuple[str, int]]:
    """(host, IOMMU group) of every PCI function the VM holds."""
    rows = s.execute(select(HostDevice.host_id, HostDevice.iommu_group).where(
        HostDevice.vm_id == vm_id, HostDevice.capability == PCI, HostDevice.iommu_group.is_not(None))).all()
    return {(host_id, group) for host_id, group in rows}


def settle(s: Session, groups: Iterable[tuple[str, int]]) -> None:
    """settle_groups for each (host, group)."""
    by_host: dict[str, set[int]] = {}
    for host_id, group in groups:
        by_host.setdefault(host_id, set()).add(group)
    for host_id, wanted in by_host.items():
        settle_groups(s, host_id, wanted)
