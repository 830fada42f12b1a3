"""Request ids: the id of the request this thread serves (a contextvar), the rule for accepting a
client's id, and the logging filter that puts it on every record (`request_id`).

engine.app sets it for each request; engine.jsonrpc_client sends it to the agent as X-Request-Id, so
one id follows a request from the engine's log into the agent's. The agent keeps its own copy of this
small module (vdsm_plugin/requestid.py): the two never import each other.
"""
from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar, Token

HEADER = "X-Request-Id"
MAX_LENGTH = 128
# What a proxy or client usually sends (UUIDs, hex, base64url ids): nothing that could forge a log
# line or a header.
_SANE = re.compile(r"[A-Za-z0-9._:+/=-]{1,%d}" % MAX_LENGTH)

_current: ContextVar[str | None] = ContextVar("plugboard_engine_request_id", default=None)


def accept(incoming: str | None) -> str:
    """The client's id when it is sane, else a new one."""
    if incoming is not None and _SANE.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


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
