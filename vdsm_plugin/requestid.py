"""The engine's request id (X-Request-Id) for the JSON-RPC call this thread serves, and the logging
filter that puts it on every record (`request_id`). The engine keeps its own copy of this small module
(engine/requestid.py): the two never import each other.
"""
from __future__ import annotations

import logging
import re
from contextvars import ContextVar, Token

HEADER = "X-Request-Id"
MAX_LENGTH = 128
# Anything else is dropped, never logged: it could forge a log line.
_SANE = re.compile(r"[A-Za-z0-9._:+/=-]{1,%d}" % MAX_LENGTH)

_current: ContextVar[str | None] = ContextVar("plugboard_agent_request_id", default=None)


def sane(incoming: str | None) -> str | None:
    """The caller's id when it is sane, else None (the agent makes up none of its own)."""
    return incoming if incoming is not None and _SANE.fullmatch(incoming) else None


def current() -> str | None:
    return _current.get()


def bind(request_id: str | None) -> Token[str | None]:
    return _current.set(request_id)


def unbind(token: Token[str | None]) -> None:
    _current.reset(token)


class Filter(logging.Filter):
    """Puts the thread's request id, when it has one, on each record as `request_id` (a record that
    has one keeps it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = _current.get()
        if request_id is not None and getattr(record, "request_id", None) is None:
            record.request_id = request_id
        return True
