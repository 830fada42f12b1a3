"""The audit log: what the engine did and why, including the host's error code and message.
Functions take the session first and never commit (an event commits with the change it records)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.dao.models import AUDIT_SEVERITIES, AuditEvent

__all__ = ["record", "list"]

MAX_LIMIT = 1000


def record(s: Session, code: str, message: str, *, severity: str = "info", vm_id: str | None = None,
           device_id: str | None = None, host_id: str | None = None, host_code: int | None = None,
           host_message: str | None = None, **vars: Any) -> AuditEvent:
    """Add one event (flushed, so its id is set). Extra keyword arguments are kept in `vars`."""
    if severity not in AUDIT_SEVERITIES:
        raise ValueError(f"severity must be one of {AUDIT_SEVERITIES}, not {severity!r}")
    event = AuditEvent(code=code, message=message, severity=severity, vm_id=vm_id, device_id=device_id,
                       host_id=host_id, host_code=host_code, host_message=host_message, vars=dict(vars))
    s.add(event)
    s.flush()
    return event


def list(s: Session, vm_id: str | None = None, after_id: int = 0, limit: int = 100, *,  # noqa: A001
         code: str | None = None, device_id: str | None = None,
         host_id: str | None = None) -> Sequence[AuditEvent]:
    """Events in id order, those with id > `after_id` (for polling), at most `limit` (capped)."""
    stmt = select(AuditEvent).where(AuditEvent.id > after_id)
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
