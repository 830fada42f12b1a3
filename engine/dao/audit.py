"""The audit log: what the engine did and why, including the host's error code and message.
Functions take the session first and never commit (an event commits with the change it records)."""
from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.orm import Session

from engine.dao._cas import Prebuilt
from engine.dao.models import AUDIT_SEVERITIES, AuditEvent, Vm, utcnow

__all__ = ["Event", "event", "record", "list", "printable", "acting_as", "set_actor", "reset_actor", "current_actor"]

# Who acts in the current context (a request's thread, a command-line run). Set once where the
# principal is known, so that every event a command writes -- its refusal, each device transition --
# names the actor without threading it through every call. The monitor's threads start without one.
_actor: ContextVar[str | None] = ContextVar("plugboard_audit_actor", default=None)


def set_actor(actor: str | None) -> Token[str | None]:
    """Name the actor of the context's events; hand the result to reset_actor when it is done."""
    return _actor.set(actor)


def reset_actor(token: Token[str | None]) -> None:
    _actor.reset(token)


@contextmanager
def acting_as(actor: str | None) -> Iterator[None]:
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def current_actor() -> str | None:
    return _actor.get()

MAX_LIMIT = 1000


@dataclass(frozen=True)
class Event:
    """One event's column values, before it is written: by `write`, or by a compare-and-set's own
    statement (dao._cas.OneRowUpdate's `insert`)."""

    values: dict[str, Any]

    @property
    def table(self) -> Table:
        return cast(Table, AuditEvent.__table__)

    def write(self, s: Session) -> AuditEvent:
        """Add the event (flushed, so its id is set) and answer it."""
        if s.autoflush:
            s.flush()       # what an ORM add would have flushed first
        # A prebuilt INSERT ... RETURNING id (every transition writes one); the event is not loaded into
        # the session: the object returned holds what was written.
        event_id = s.execute(_INSERT.statement, self.values).scalar_one()
        return AuditEvent(id=event_id, **self.values)


def event(code: str, message: str, *, severity: str = "info", vm_id: str | None = None,
          device_id: str | None = None, host_id: str | None = None, host_code: int | None = None,
          host_message: str | None = None, actor: str | None = None, **vars: Any) -> Event:
    """An event to write. Extra keyword arguments are kept in `vars`. The actor is the one given, else
    the context's (acting_as)."""
    if severity not in AUDIT_SEVERITIES:
        raise ValueError(f"severity must be one of {AUDIT_SEVERITIES}, not {severity!r}")
    return Event({"time": utcnow(), "code": code, "message": printable(message), "severity": severity,
                  "vm_id": vm_id, "device_id": device_id, "host_id": host_id, "host_code": host_code,
                  "host_message": printable(host_message), "vars": printable(dict(vars)),
                  "actor": actor if actor is not None else _actor.get()})


def record(s: Session, code: str, message: str, **kwargs: Any) -> AuditEvent:
    """Add one event at once (event's arguments) and answer it, its id set."""
    return event(code, message, **kwargs).write(s)


def _insert() -> Any:
    table = cast(Table, AuditEvent.__table__)
    columns = ("time", "code", "message", "severity", "vm_id", "device_id", "host_id", "host_code", "host_message",
               "vars", "actor")
    return insert(table).values({c: bindparam(c, type_=table.c[c].type) for c in columns}).returning(table.c.id)


_INSERT = Prebuilt(_insert)


def list(s: Session, vm_id: str | None = None, after_id: int = 0, limit: int = 100, *,  # noqa: A001
         code: str | None = None, device_id: str | None = None,
         host_id: str | None = None, projects: Collection[str] | None = None) -> Sequence[AuditEvent]:
    """Events in id order, those with id > `after_id` (for polling), at most `limit` (capped).
    `projects` (None: all) keeps the events of those projects' VMs only, filtered before the limit so
    that polling pages stay full."""
    stmt = select(AuditEvent).where(AuditEvent.id > after_id)
    if projects is not None:
        stmt = stmt.where(AuditEvent.vm_id.in_(select(Vm.id).where(Vm.project_id.in_(tuple(projects)))))
    if vm_id is not None:
        stmt = stmt.where(AuditEvent.vm_id == vm_id)
    if code is not None:
        stmt = stmt.where(AuditEvent.code == code)
    if device_id is not None:
        stmt = stmt.where(AuditEvent.device_id == device_id)
    if host_id is not None:
        stmt = stmt.where(AuditEvent.host_id == host_id)
    limit = max(0, min(int(limit), MAX_LIMIT))
    return s.scalars(stmt.order_by(AuditEvent.id).limit(limit)).all()


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(value: Any) -> Any:
    """`value` with the control characters of its strings (in lists and dicts too) written as escapes
    (a newline as \\n): an event reads as one line wherever it is shown, whatever a refused request
    carried, and PostgreSQL cannot store a NUL."""
    if isinstance(value, str):
        return _CONTROL.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), value)
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, Sequence):     # a list or tuple (a str is taken above)
        return [printable(v) for v in value]
    return value
