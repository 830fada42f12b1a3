"""The engine's errors. Each carries a stable machine code and its HTTP status; the REST layer maps
them to JSON faults in one place (engine/faults.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reason:
    """One failed canDo check: a stable code and the variables that explain it."""

    code: str
    message: str
    vars: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "vars": dict(self.vars)}


class EngineError(Exception):
    """Base of every coded engine failure."""

    status: int = 500
    code: str = "INTERNAL_ERROR"

    def __init__(self, message: str, *, code: str | None = None, reasons: list[Reason] | None = None,
                 host_code: int | None = None, host_message: str | None = None, host: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.reasons = list(reasons or [])
        self.host_code = host_code
        self.host_message = host_message
        self.host = host
        self.headers = dict(headers or {})      # response headers the fault must carry (WWW-Authenticate)

    def to_dict(self) -> dict[str, Any]:
        fault: dict[str, Any] = {"code": self.code, "status": self.status, "message": self.message}
        if self.reasons:
            fault["reasons"] = [r.to_dict() for r in self.reasons]
        if self.host_code is not None or self.host is not None:
            fault["host"] = {"name": self.host, "code": self.host_code, "message": self.host_message}
        return fault


class NotFound(EngineError):
    status = 404
    code = "NOT_FOUND"


class BadRequest(EngineError):
    """A request whose values are well formed but do not name what they must (a list's marker)."""

    status = 400
    code = "BAD_REQUEST"


class Unauthorized(EngineError):
    """No valid credential: none was sent, or the token is unknown, malformed, expired or revoked."""

    status = 401
    code = "UNAUTHORIZED"


class Forbidden(EngineError):
    """The principal is known but its role or projects do not allow the request."""

    status = 403
    code = "FORBIDDEN"


class ValidationFailed(EngineError):
    """canDo refused: every reason is listed. 409 because the request is well formed but the state
    of the VM or device does not allow it."""

    status = 409
    code = "ACTION_NOT_ALLOWED"


class Conflict(EngineError):
    """Another operation is in flight on the device, or a compare-and-set lost a race."""

    status = 409
    code = "OPERATION_IN_FLIGHT"


class HostCallFailed(EngineError):
    """The host agent answered with a coded error."""

    status = 502
    code = "HOST_ERROR"


class HostUnreachable(EngineError):
    """The host agent could not be reached (connection refused, timeout, TLS failure).

    `outcome_unknown` is True when the request may have reached the agent (no answer in time, the
    connection dropped after sending): the host may have acted, so only the host's truth settles it."""

    status = 503
    code = "HOST_UNREACHABLE"

    def __init__(self, message: str, *, outcome_unknown: bool = False, **kw) -> None:
        super().__init__(message, **kw)
        self.outcome_unknown = outcome_unknown
