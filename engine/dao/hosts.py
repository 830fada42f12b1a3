"""Queries on hosts. Functions take the session first and never commit."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, delete as sql_delete, func, select, update
from sqlalchemy.orm import Session, make_transient_to_detached

from engine.dao._cas import Prebuilt, rowcount, update_one
from engine.dao.models import HOST_STATUSES, Host, Vm, utcnow
from engine.vocab import HOST_UP

__all__ = ["get", "get_locked", "read_detached", "get_by_name", "get_by_agent", "list", "update_capabilities",
           "set_status", "set_status_cas", "delete", "take_events", "running_vm_counts"]


def get(s: Session, host_id: str) -> Host | None:
    return s.get(Host, host_id)


def get_locked(s: Session, host_id: str, *, shared: bool = False) -> Host | None:
    """The host's row as it is now, locked until the transaction ends: FOR UPDATE, or FOR SHARE when
    `shared` (PostgreSQL; SQLite's IMMEDIATE transactions are serialized whole). A start holds its host
    shared while it claims it; maintenance and removal hold it exclusively while they check its VMs, so
    neither can miss the other."""
    return s.scalars(select(Host).where(Host.id == host_id).with_for_update(read=shared)
                     .execution_options(populate_existing=True)).one_or_none()


def read_detached(conn: Connection, host_id: str) -> Host | None:
    """The host's row as it is now, by one prebuilt Core statement on `conn`, as a detached Host (as
    if loaded by a session since closed). The monitor reads it before every long poll of every host:
    an ORM session and load cost twice as much CPU."""
    return _detached(conn.execute(_READ.statement, {"host_id": host_id}).mappings().first())


def _detached(row: Any) -> Host | None:
    if row is None:
        return None
    host = Host(**row)
    make_transient_to_detached(host)
    return host


_READ = Prebuilt(lambda: select(Host.__table__).where(Host.__table__.c.id == bindparam("host_id")))


def get_by_name(s: Session, name: str) -> Host | None:
    return s.scalars(select(Host).where(Host.name == name)).one_or_none()


def get_by_agent(s: Session, agent_id: str) -> Host | None:
    """The host whose agent is `agent_id` (Host.getCapabilities hostId)."""
    return s.scalars(select(Host).where(Host.agent_id == agent_id)).one_or_none()


def update_capabilities(s: Session, host_id: str, capabilities: dict[str, Any], *,
                        status: str | None = HOST_UP, agent_id: str | None = None) -> bool:
    """Store what Host.getCapabilities answered, stamp last_refresh and (by default) mark the host up;
    `agent_id` (its hostId) too unless None. True when the host exists."""
    values: dict[str, Any] = {"capabilities": capabilities, "last_refresh": utcnow()}
    if agent_id is not None:
        values["agent_id"] = agent_id
    if status is not None:
        values["status"] = _checked(status)
    return update_one(s, Host, host_id, values)


def set_status(s: Session, host_id: str, status: str) -> bool:
    return update_one(s, Host, host_id, {"status": _checked(status)})


def set_status_cas(s: Session, host_id: str, expected: tuple[str, ...], status: str) -> bool:
    """Compare-and-set the host's status; False when it is missing or not in `expected` (a host put in
    maintenance meanwhile stays there)."""
    return update_one(s, Host, host_id, {"status": _checked(status)}, Host.status.in_(expected))


def delete(s: Session, host_id: str) -> bool:
    """Remove the host; its device inventory goes with it, its VMs' run_on_host is cleared."""
    return rowcount(s.execute(sql_delete(Host).where(Host.id == host_id))) == 1


def take_events(s: Session, host_id: str, after: int, seq: int) -> Host | None:
    """Move the consumed-journal mark from `after` to `seq` (compare-and-set on last_event_seq = after),
    before the events are applied in the same transaction: of two monitors that read the same events,
    the second waits for the first's row lock, then finds the mark moved and applies nothing (None).
    Returns the host's row as the move left it, detached (as read_detached reads it): the monitor polls
    the host next with it, with no read of its own. A copy the session holds has its mark expired."""
    held = s.identity_map.get(s.identity_key(Host, host_id))
    if held is not None:
        s.expire(held, ["last_event_seq"])
    return _detached(s.execute(_TAKE.statement, {"host_id": host_id, "after": after, "seq": seq}).mappings().first())


def _take() -> Any:
    hosts = cast(Table, Host.__table__)
    return (update(hosts).where(hosts.c.id == bindparam("host_id"), hosts.c.last_event_seq == bindparam("after"))
            .values(last_event_seq=bindparam("seq")).returning(*hosts.c))


# Prebuilt: the monitor runs it for every batch of events it applies.
_TAKE = Prebuilt(_take)


def _checked(status: str) -> str:
    if status not in HOST_STATUSES:
        raise ValueError(f"unknown host status {status!r}")
    return status


def list(s: Session, cluster_id: str | None = None, status: str | None = None) -> Sequence[Host]:  # noqa: A001
    stmt = select(Host)
    if cluster_id is not None:
        stmt = stmt.where(Host.cluster_id == cluster_id)
    if status is not None:
        stmt = stmt.where(Host.status == status)
    return s.scalars(stmt.order_by(Host.name)).all()


def running_vm_counts(s: Session, host_ids: Sequence[str], statuses: tuple[str, ...]) -> dict[str, int]:
    """How many VMs in `statuses` each host runs, in one grouped query."""
    if not host_ids:
        return {}
    rows = s.execute(select(Vm.run_on_host, func.count()).where(Vm.run_on_host.in_(tuple(host_ids)),
                                                              Vm.status.in_(statuses))
                     .group_by(Vm.run_on_host)).all()
    return {host_id: count for host_id, count in rows}
