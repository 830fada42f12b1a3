"""Nova's fault body, `{"badRequest": {"code": 400, "message": "..."}}`, keyed by the HTTP status as
Nova's API names it; engine.faults maps the exception to the status and code, this only renders."""
from __future__ import annotations

from typing import Any

from engine.faults import Fault

# nova.api.openstack.wsgi.Fault's names; any other status is a computeFault.
FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    501: "notImplemented",
    503: "serviceUnavailable",
}


def message_of(fault: Fault) -> str:
    """The fault's message followed by each reason's (Nova's body has room for one message)."""
    parts = [fault.message] + [r.message for r in fault.reasons if r.message not in fault.message]
    return " ".join(parts)


def nova_shape(fault: Fault) -> dict[str, Any]:
    return {FAULT_NAMES.get(fault.status, "computeFault"): {"code": fault.status, "message": message_of(fault)}}
