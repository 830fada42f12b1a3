"""A host's device inventory (USB devices, PCI functions) and the claims VMs hold on them.

A claim is a compare-and-set, ``UPDATE ... WHERE id=:id AND status='available'``: two requests can
never get one device. Functions take the session first and never commit."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Row, Table, and_, case, func, insert, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from engine.dao._cas import update_one
from engine.dao.models import Host, HostDevice, Vm, VmDevice, utcnow
from engine.vocab import ALLOCATED, AVAILABLE, CLAIMED, REMOVED, UNAVAILABLE

__all__ = ["InventoryChange", "from_agent", "identity", "sync", "sync_named", "decide", "get", "get_by_name",
           "list_for_host", "list_for_vm", "held_on_host", "held_on_hosts", "claim", "allocate", "release",
           "release_for_vm", "Want", "hosts_with_free", "free_counts", "free_on_host", "matches"]

#: Agent field (Host.hostdevListByCaps, camelCase) -> column.
_AGENT_KEYS = {
    "name": "name", "capability": "capability", "vendorId": "vendor_id", "productId": "product_id",
    "vendorName": "vendor_name", "productName": "product_name", "bus": "bus", "device": "device",
    "portPath": "port_path", "serial": "serial", "pciAddress": "pci_address", "iommuGroup": "iommu_group",
    "driver": "driver", "parent": "parent", "allowed": "allowed",
}
#: Columns the inventory describes (the host's facts); identity, status, vm_id and present are the engine's.
INVENTORY_COLUMNS = tuple(_AGENT_KEYS.values())
_COLUMN_OF = {**_AGENT_KEYS, **{c: c for c in INVENTORY_COLUMNS}}
_REQUIRED = frozenset({"name", "capability", "vendor_id", "product_id"})
CAPABILITIES = ("usb_device", "pci")
HELD = (CLAIMED, ALLOCATED)
# What a device no VM holds is: gone, not assignable (the whitelist), or free.
FREE_STATUS = case((HostDevice.present.is_(False), REMOVED), (HostDevice.allowed.is_(False), UNAVAILABLE),
                   else_=AVAILABLE)


@dataclass
class InventoryChange:
    """What a sync changed, by device id."""

    added: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)     # facts changed (name, bus/device, whitelist, ...)
    removed: list[int] = field(default_factory=list)     # gone from the host, no VM held it
    returned: list[int] = field(default_factory=list)    # were removed, seen again
    lost: list[int] = field(default_factory=list)        # gone from the host while a VM holds it
    found: list[int] = field(default_factory=list)       # a VM's lost device is back on the host

    def __bool__(self) -> bool:
        return any((self.added, self.updated, self.removed, self.returned, self.lost, self.found))


def from_agent(item: Mapping[str, Any]) -> dict[str, Any]:
    """One device as the agent reports it (camelCase) or as columns (snake_case) -> columns."""
    out: dict[str, Any] = {_COLUMN_OF[k]: v for k, v in item.items() if k in _COLUMN_OF}
    if not _REQUIRED <= out.keys():
        raise ValueError(f"host device {item.get('name')!r} lacks {sorted(_REQUIRED - out.keys())}")
    out.setdefault("allowed", False)
    return out


def identity(facts: Mapping[str, Any]) -> str:
    """What stays of a device across a pull and a replug: where it is plugged (a USB port path, a PCI
    address), its ids and its serial -- never the node-device name or bus/device numbers. Another
    device on a known port is another identity, so it is a new device (Proxmox's "hardware changed")."""
    place = facts.get("pci_address") if facts["capability"] == "pci" else facts.get("port_path")
    return ":".join((facts["capability"], str(place or facts["name"]), str(facts["vendor_id"]).lower(),
                     str(facts["product_id"]).lower(), str(facts.get("serial") or "")))


_SYNC_COLUMNS = (HostDevice.id, HostDevice.identity, HostDevice.status, HostDevice.present,
                 *(getattr(HostDevice, c) for c in INVENTORY_COLUMNS))
_FACTS_AT = 4       # where the inventory columns start in a _SYNC_COLUMNS row
# A present device whose facts did not change needs nothing when its status is one of these (by allowed).
_SETTLED = {True: (AVAILABLE, CLAIMED, ALLOCATED), False: (UNAVAILABLE, CLAIMED, ALLOCATED)}
_FEW = 100          # new devices read back by identity; more: the host's ids read back whole


def sync(s: Session, host_id: str, inventory: Iterable[Mapping[str, Any]], *,
         capabilities: Iterable[str] = CAPABILITIES) -> InventoryChange:
    """Bring the host's rows of `capabilities` to the inventory just read from it, in a few statements
    whatever the host's size (rows are compared as tuples, the unchanged ones in one comparison each;
    changed rows are written in bulk). Each row follows `decide`; a reported identity no row has is a
    new row, available (unavailable when the whitelist does not allow it)."""
    caps = tuple(capabilities)
    reported = _by_identity(inventory, caps)
    return _apply(s, host_id, reported, and_(HostDevice.host_id == host_id, HostDevice.capability.in_(caps)))


def sync_named(s: Session, host_id: str, names: Iterable[str], inventory: Iterable[Mapping[str, Any]], *,
               capabilities: Iterable[str] = CAPABILITIES) -> InventoryChange:
    """`sync` for the devices the host calls `names` (what a journal event names), given what it
    reports for them now: a reported device is found by its identity, as the full sync finds it; a row
    that goes by one of these names and whose identity is not reported is gone from the host. Same
    rules (`decide`), same outcome as a full sync would have for that change, a handful of rows read."""
    caps = tuple(capabilities)
    reported = _by_identity(inventory, caps)
    # The host in each branch, so that SQLite searches both indexes rather than every row of the host.
    mine = HostDevice.host_id == host_id
    return _apply(s, host_id, reported, and_(HostDevice.capability.in_(caps), or_(
        and_(mine, HostDevice.identity.in_(list(reported))), and_(mine, HostDevice.name.in_(list(names))))))


def decide(row: Row[Any], facts: Mapping[str, Any] | None, change: InventoryChange) -> dict[str, Any]:
    """The sync's rules for one known row (_SYNC_COLUMNS), given the facts the host reports under its
    identity now (None: it reports none). Records the outcome in `change` and returns the columns to
    write (none when nothing changes):

    - a known device gets its facts refreshed (name and bus/device change on every replug); a free
      device follows the whitelist; a removed one comes back (returned), a held one that was gone too
      (found);
    - a device no longer reported is removed -- unless a VM holds it: then it stays the VM's, with
      present = false (lost), until the VM lets it go or the device comes back.
    """
    if facts is None:
        return _gone(row, change)
    if row.present and row.status in _SETTLED[facts["allowed"]] and \
            row[_FACTS_AT:] == tuple(map(facts.get, INVENTORY_COLUMNS)):
        return {}       # the common case, decided by one tuple comparison
    values = {k: v for k, v in facts.items() if getattr(row, k) != v}
    if values:
        change.updated.append(row.id)
    if not row.present:
        values["present"] = True
        if row.status in HELD:
            change.found.append(row.id)
    if row.status not in HELD:
        status = AVAILABLE if facts["allowed"] else UNAVAILABLE
        if row.status != status:
            values["status"] = status
        if row.status == REMOVED:
            change.returned.append(row.id)
    return values


def _gone(row: Row[Any], change: InventoryChange) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if row.present:
        values["present"] = False
        if row.status in HELD:
            change.lost.append(row.id)
    if row.status not in HELD and row.status != REMOVED:
        values["status"] = REMOVED
        change.removed.append(row.id)
    return values


def _by_identity(inventory: Iterable[Mapping[str, Any]], caps: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The reported devices of `caps`, as columns, by identity (one reported twice is an error)."""
    reported: dict[str, dict[str, Any]] = {}
    for item in inventory:
        seen = from_agent(item)
        if seen["capability"] not in caps:
            continue
        key = identity(seen)
        if key in reported:
            raise ValueError(f"host device {key!r} reported twice")
        reported[key] = seen
    return reported


def _apply(s: Session, host_id: str, reported: dict[str, dict[str, Any]],
           where: ColumnElement[bool]) -> InventoryChange:
    """Decide every row of the host that `where` selects against `reported` (taking out what it
    matches), insert what is left as new devices of the host, and write the changes in bulk."""
    change = InventoryChange()
    now = utcnow()
    updates: list[dict[str, Any]] = []
    s.flush()       # rows are read below the ORM (a third cheaper for 2,000 rows): pending ones first
    for row in s.connection().execute(select(*_SYNC_COLUMNS).where(where)):
        if values := decide(row, reported.pop(row.identity, None), change):
            updates.append({"id": row.id, "updated_at": now, **values})
    if reported:
        change.added = _insert(s, host_id, reported, now)
    if updates:
        s.execute(update(HostDevice), updates)
        for values in updates:      # copies the session holds are read again when next used
            if (obj := s.identity_map.get(identity_key(HostDevice, values["id"]))) is not None:
                s.expire(obj)
    return change


def _insert(s: Session, host_id: str, new: dict[str, dict[str, Any]], now: datetime) -> list[int]:
    """Insert the `new` devices (by identity); returns their ids in `new`'s order."""
    table = HostDevice.metadata.tables[HostDevice.__tablename__]
    rows = [{"host_id": host_id, "identity": key, "present": True, "updated_at": now,
             "status": AVAILABLE if facts["allowed"] else UNAVAILABLE, **_all_facts(facts)}
            for key, facts in new.items()]
    dialect = s.get_bind().dialect
    if (dialect.name, dialect.driver) == ("postgresql", "psycopg"):
        _copy(s, table, rows)
    else:
        # A plain executemany: RETURNING in parameter order would make SQLAlchemy send one INSERT per
        # row (no sentinel column to sort a batch's ids by). The ids are then read back by identity.
        s.execute(insert(table), rows)
    stmt = select(HostDevice.identity, HostDevice.id).where(HostDevice.host_id == host_id)
    if len(new) <= _FEW:    # a long IN list costs more to render and plan than the host's every id
        stmt = stmt.where(HostDevice.identity.in_(list(new)))
    ids = dict(s.execute(stmt).tuples().all())
    return [ids[key] for key in new]


def _copy(s: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL (psycopg 3): the rows in one COPY, in the session's transaction. An executemany is one
    INSERT per row on the server, three times slower for a host's 2,000 devices (and a multi-row INSERT
    with that many parameters slower still)."""
    quote = s.get_bind().dialect.identifier_preparer.quote
    columns = list(rows[0])
    psycopg_conn: Any = s.connection().connection.driver_connection
    with psycopg_conn.cursor() as cursor, \
            cursor.copy(f"COPY {quote(table.name)} ({', '.join(map(quote, columns))}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def _all_facts(facts: Mapping[str, Any]) -> dict[str, Any]:
    """Every inventory column, so that one bulk INSERT takes every row alike."""
    return {c: facts.get(c) for c in INVENTORY_COLUMNS}


def get(s: Session, dev_id: int) -> HostDevice | None:
    return s.get(HostDevice, dev_id)


def get_by_name(s: Session, host_id: str, name: str) -> HostDevice | None:
    """The device the host now calls `name` (a removed device may have had that name before)."""
    return s.scalars(select(HostDevice).where(HostDevice.host_id == host_id, HostDevice.name == name)
                     .order_by((HostDevice.status == REMOVED).asc(), HostDevice.updated_at.desc())
                     .limit(1)).first()


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


def held_on_host(s: Session, host_id: str, *, lock: bool = True) -> list[tuple[str, str]]:
    """(device name, VM name) for each device of the host that a VM holds or has among its devices,
    ordered. With `lock`, the host's device rows are locked first (FOR UPDATE on PostgreSQL): a claim
    or a new device row that would take one waits for the caller's transaction -- and then finds it
    gone."""
    if lock:
        s.execute(select(HostDevice.id).where(HostDevice.host_id == host_id).order_by(HostDevice.id)
                  .with_for_update())
    return held_on_hosts(s, [host_id])[host_id]


def held_on_hosts(s: Session, host_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """held_on_host for several hosts in one statement, unlocked, by host id."""
    found: dict[str, set[tuple[str, str]]] = {host_id: set() for host_id in host_ids}
    if found:
        mine = HostDevice.host_id.in_(tuple(found))
        columns = (HostDevice.host_id, HostDevice.name, Vm.name)
        holding = select(*columns).join(Vm, Vm.id == HostDevice.vm_id).where(mine)
        configured = (select(*columns).join(VmDevice, VmDevice.host_device_id == HostDevice.id)
                      .join(Vm, Vm.id == VmDevice.vm_id).where(mine))
        for host_id, device, vm in s.execute(holding.union(configured)).all():
            found[host_id].add((device, vm))
    return {host_id: sorted(pairs) for host_id, pairs in found.items()}


def _cas(s: Session, dev_id: int, where: Sequence[Any], values: dict[str, Any]) -> bool:
    return update_one(s, HostDevice, dev_id, values, *where)


def claim(s: Session, dev_id: int, vm_id: str) -> bool:
    """available -> claimed by `vm_id`. False when the device is missing or not available."""
    return _cas(s, dev_id, [HostDevice.status == AVAILABLE], {"status": CLAIMED, "vm_id": vm_id})


def allocate(s: Session, dev_id: int, vm_id: str) -> bool:
    """claimed -> allocated (attached to the running VM), only by the VM that claimed it."""
    return _cas(s, dev_id, [HostDevice.status == CLAIMED, HostDevice.vm_id == vm_id],
                {"status": ALLOCATED})


def release(s: Session, dev_id: int, vm_id: str, *, error: dict[str, Any] | None = None) -> bool:
    """claimed|allocated by `vm_id` -> free again (available; removed if it left the host meanwhile,
    unavailable if the whitelist no longer allows it), keeping `error` as its last error (a failed
    attach). False when `vm_id` does not hold it."""
    return _cas(s, dev_id, [HostDevice.status.in_(HELD), HostDevice.vm_id == vm_id],
                {"status": FREE_STATUS, "vm_id": None, "last_error": error})


def release_for_vm(s: Session, vm_id: str) -> int:
    """Release every device `vm_id` holds; returns how many."""
    released = s.scalars(update(HostDevice).where(HostDevice.vm_id == vm_id, HostDevice.status.in_(HELD))
                         .values(status=FREE_STATUS, vm_id=None).returning(HostDevice.id)
                         .execution_options(synchronize_session=False)).all()
    for dev_id in released:     # copies the session holds are read again when next used
        if (obj := s.identity_map.get(identity_key(HostDevice, dev_id))) is not None:
            s.expire(obj)
    return len(released)


# ---- placement: hosts with the USB devices a VM asks for free -----------------------------------

class Want(Protocol):
    """Devices asked for: one device by `id`, or `count` devices with these vendor/product ids
    (lower-case hex, no 0x; the inventory keeps the agent's spelling, with or without 0x)."""

    @property
    def id(self) -> int | None: ...
    @property
    def vendor_id(self) -> str | None: ...
    @property
    def product_id(self) -> str | None: ...
    @property
    def count(self) -> int: ...


USB = "usb_device"
# Free to take: available (so allowed by the whitelist) and on the host now.
_FREE = (HostDevice.capability == USB, HostDevice.status == AVAILABLE, HostDevice.present.is_(True),
         HostDevice.allowed.is_(True))


def _hex_is(column: Any, value: str | None) -> ColumnElement[bool]:
    return func.lower(column).in_((value or "", f"0x{value}"))


def _match(want: Want) -> ColumnElement[bool]:
    if want.id is not None:
        return HostDevice.id == want.id
    return and_(_hex_is(HostDevice.vendor_id, want.vendor_id), _hex_is(HostDevice.product_id, want.product_id))


def matches(dev: HostDevice, want: Want) -> bool:
    """Python's reading of _match, for sharing out the rows free_on_host returned."""
    if want.id is not None:
        return dev.id == want.id
    return (dev.vendor_id.lower().removeprefix("0x"), dev.product_id.lower().removeprefix("0x")) == \
        (want.vendor_id, want.product_id)


def _tallies(wants: Sequence[Want]) -> list[Any]:
    return [func.sum(case((_match(w), 1), else_=0)) for w in wants]


def hosts_with_free(s: Session, wants: Sequence[Want], *, cluster_id: str, host_status: str,
                    running_statuses: tuple[str, ...], host_id: str | None = None) -> list[tuple[Host, int]]:
    """Hosts of `cluster_id` in `host_status` (only `host_id` when given) with every want free, and the
    VMs each runs, least loaded first (then by name): one grouped query over the inventory, whatever the
    number of hosts. Each want is counted on its own and all of them together, so a device that two
    wants could take is not counted twice toward the total; the caller shares the devices out."""
    if not wants:
        return []
    load = (select(func.count()).where(Vm.run_on_host == Host.id, Vm.status.in_(running_statuses))
            .correlate(Host).scalar_subquery().label("load"))
    total = sum(w.count for w in wants)
    enough = [tally >= w.count for tally, w in zip(_tallies(wants), wants)]
    stmt = (select(Host, load).join(HostDevice, HostDevice.host_id == Host.id)
            .where(Host.cluster_id == cluster_id, Host.status == host_status, *_FREE, or_(*map(_match, wants)))
            .group_by(Host.id).having(and_(func.count(HostDevice.id) >= total, *enough))
            .order_by(load, Host.name))
    if host_id is not None:
        stmt = stmt.where(Host.id == host_id)
    return [(host, count) for host, count in s.execute(stmt).all()]


def free_counts(s: Session, wants: Sequence[Want], host_ids: Sequence[str]) -> list[int]:
    """For each want, the most devices free for it on any one of `host_ids` (what a refusal names
    as missing), in one grouped query."""
    if not wants or not host_ids:
        return [0] * len(wants)
    rows = s.execute(select(*_tallies(wants)).where(HostDevice.host_id.in_(tuple(host_ids)), *_FREE)
                     .group_by(HostDevice.host_id)).all()
    return [max((int(row[i] or 0) for row in rows), default=0) for i in range(len(wants))]


def free_on_host(s: Session, host_id: str, wants: Sequence[Want]) -> Sequence[HostDevice]:
    """The host's free devices that some want matches, by id."""
    return s.scalars(select(HostDevice).where(HostDevice.host_id == host_id, *_FREE, or_(*map(_match, wants)))
                     .order_by(HostDevice.id)).all()
