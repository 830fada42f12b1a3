"""The REST layer's one error handler.

Every failure leaving the engine's HTTP API goes through `fault_for(exc)`, which turns it into a
shape-neutral `Fault` (status, stable code, message, every reason, the host's code and message).
A *shape* then renders that Fault as a response body. The native shape is

    {"fault": {"code": ..., "status": ..., "message": ..., "reasons": [...], "host": {...}}}

Another facade (the Nova-compatible API) registers its own shape for its blueprint with
`register_shape(app, blueprint_name, render)`; the mapping from exceptions to faults stays here.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from flask import Flask, Response, jsonify, request
from marshmallow import ValidationError
from sqlalchemy.exc import DataError, IntegrityError
from werkzeug.exceptions import HTTPException

from engine import reasons as R
from engine.errors import EngineError, Reason

log = logging.getLogger(__name__)

# webargs namespaces validation messages by the request location they came from.
_LOCATIONS = {"json": "body", "query": "query", "querystring": "query", "view_args": "path",
              "form": "form", "headers": "header", "cookies": "cookie", "files": "files",
              "json_or_form": "body"}

# HTTP statuses that carry no engine meaning, with the code each answers with.
_HTTP_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "BAD_REQUEST",
}


@dataclass
class Fault:
    """What went wrong, independent of the response shape."""

    status: int
    code: str
    message: str
    reasons: list[Reason] = field(default_factory=list)
    host: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "status": self.status, "message": self.message,
                                "reasons": [r.to_dict() for r in self.reasons]}
        if self.host is not None:
            body["host"] = dict(self.host)
        return body


Shape = Callable[[Fault], Any]


def native_shape(fault: Fault) -> dict[str, Any]:
    return {"fault": fault.to_dict()}


# ---------------------------------------------------------------------------------------------
# exception -> Fault


def _field_reasons(messages: Any, prefix: str = "") -> list[Reason]:
    """Flatten marshmallow messages into one INVALID_FIELD reason per field (dotted paths)."""
    if isinstance(messages, Mapping):
        reasons: list[Reason] = []
        for key, value in messages.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                reasons.append(R.invalid_field(path, value))
            else:
                reasons.extend(_field_reasons(value, path))
        return reasons
    if isinstance(messages, list):
        return [R.invalid_field(prefix or "_schema", [str(m) for m in messages])]
    return [R.invalid_field(prefix or "_schema", [str(messages)])]


def _validation_fault(messages: Any) -> Fault:
    reasons: list[Reason] = []
    if isinstance(messages, Mapping) and messages and all(k in _LOCATIONS for k in messages):
        for location, inner in messages.items():
            for reason in _field_reasons(inner):
                reasons.append(Reason(reason.code, reason.message,
                                      {**reason.vars, "location": _LOCATIONS[location]}))
    else:
        reasons = _field_reasons(messages)
    return Fault(400, "BAD_REQUEST", "The request is not valid: " + "; ".join(r.message for r in reasons),
                 reasons)


def _http_fault(exc: HTTPException) -> Fault:
    status = exc.code or 500
    inner = getattr(exc, "exc", None)
    data = getattr(exc, "data", None) or {}
    headers = dict(data.get("headers") or {})
    if isinstance(inner, (json.JSONDecodeError, UnicodeDecodeError)):
        return Fault(400, "MALFORMED_JSON", f"The request body is not valid JSON: {inner}", headers=headers)
    if isinstance(inner, ValidationError) or status == 422:
        fault = _validation_fault(data.get("messages", getattr(inner, "messages", {})))
        fault.headers.update(headers)
        return fault
    if status >= 500:
        return Fault(status, "INTERNAL_ERROR", "The engine failed to handle the request.")
    code = _HTTP_CODES.get(status, exc.name.upper().replace(" ", "_").replace("-", "_"))
    message = exc.description or exc.name
    if status == 404:
        message = f"No resource at {request.path}."
    elif status == 405:
        message = f"Method {request.method} is not allowed on {request.path}."
        allowed = exc.get_headers()
        headers.update({k: v for k, v in allowed if k.lower() == "allow"})
    elif status == 415:
        message = f"Content type {request.mimetype or '(none)'!r} is not supported; send application/json."
    return Fault(status, code, message, headers=headers)


def _engine_fault(exc: EngineError) -> Fault:
    host = None
    if exc.host_code is not None or exc.host is not None or exc.host_message is not None:
        host = {"name": exc.host, "code": exc.host_code, "message": exc.host_message}
    return Fault(exc.status, exc.code, exc.message, list(exc.reasons), host, headers=dict(exc.headers))


def fault_for(exc: BaseException) -> Fault:
    """Map any exception to its Fault. Unknown exceptions become a 500 with no detail in the body.
    A unique constraint that decided a race the command's own checks could not see is a 409: the
    commands name the usual ones (engine.commands.common.unique_name); this is the net under them."""
    if isinstance(exc, EngineError):
        return _engine_fault(exc)
    if isinstance(exc, IntegrityError) and "unique" in str(exc.orig).lower():
        return Fault(409, "CONFLICT", "The request conflicts with a concurrent change (a unique value is already "
                     "taken); read the resource again and retry.",
                     [Reason("NAME_IN_USE", "A unique value of the request is already taken.", {})])
    if isinstance(exc, DataError):
        # A value the database refuses to hold that the syntax checks let through: on PostgreSQL a NUL
        # character (in a path id, a query or a body string), an integer beyond its column, a string
        # over its column's length. The request's fault, on every front; SQLite stores them all.
        return Fault(400, "BAD_REQUEST", "The request holds a value the database cannot store (a NUL character, "
                     "a number out of range or a string too long).",
                     [Reason("INVALID_VALUE", "A value of the request cannot be stored.", {})])
    if isinstance(exc, ValidationError):
        return _validation_fault(exc.messages)
    if isinstance(exc, HTTPException):
        return _http_fault(exc)
    return Fault(500, "INTERNAL_ERROR", "The engine failed to handle the request.")


# ---------------------------------------------------------------------------------------------
# wiring

_SHAPES_KEY = "plugboard.fault_shapes"


def register_shape(app: Flask, blueprint_name: str, shape: Shape) -> None:
    """Answer faults of one blueprint's routes in another shape (e.g. Nova's)."""
    app.extensions.setdefault(_SHAPES_KEY, {})[blueprint_name] = shape


def _shape() -> Shape:
    from flask import current_app

    shapes = current_app.extensions.get(_SHAPES_KEY, {})
    blueprint = request.blueprint
    while blueprint:
        if blueprint in shapes:
            return shapes[blueprint]
        blueprint = blueprint.rpartition(".")[0]
    return native_shape


def respond(fault: Fault) -> Response:
    response = jsonify(_shape()(fault))
    response.status_code = fault.status
    for key, value in fault.headers.items():
        response.headers[key] = value
    return response


def handle(exc: BaseException) -> Response:
    fault = fault_for(exc)
    if fault.status >= 500 and not isinstance(exc, EngineError):
        original = getattr(exc, "original_exception", None) or exc
        log.error("unhandled error on %s %s", request.method, request.path,
                  exc_info=(type(original), original, original.__traceback__))
    elif isinstance(exc, EngineError) and fault.status >= 500:
        log.warning("%s %s -> %s %s: %s", request.method, request.path, fault.status, fault.code, fault.message)
    elif isinstance(exc, DataError):
        log.warning("%s %s -> 400: the database refused a value: %s", request.method, request.path, exc.orig)
    elif isinstance(exc, EngineError):
        log.info("%s %s -> %s %s: %s", request.method, request.path, fault.status, fault.code, fault.message)
    return respond(fault)


def register(app: Flask) -> None:
    """Install the handler for every exception the app can raise."""
    app.register_error_handler(EngineError, handle)
    app.register_error_handler(ValidationError, handle)
    app.register_error_handler(HTTPException, handle)
    app.register_error_handler(Exception, handle)
