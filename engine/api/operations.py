"""Operations: /healthz (liveness: the process answers; no database), /readyz (the database answers
and is at the newest alembic revision; 503 naming what is not otherwise) and /metrics (Prometheus'
text format, engine.metrics). All three are public (api.PUBLIC_ENDPOINTS) and cheap: probes and
scrapers call them every few seconds and carry no token."""
from __future__ import annotations

import logging

import marshmallow as ma
from flask import Response
from flask.views import MethodView
from sqlalchemy.exc import SQLAlchemyError

from engine import metrics
from engine.api.common import Blueprint, read_sessions
from engine.dao import schema_revision

log = logging.getLogger(__name__)

NAME = "operations"
ENDPOINTS = frozenset({f"{NAME}.healthz", f"{NAME}.readyz", f"{NAME}.metrics"})
OK = "ok"


class HealthSchema(ma.Schema):
    status = ma.fields.String(required=True, metadata={"example": "ok"})


class ReadySchema(ma.Schema):
    status = ma.fields.String(required=True, metadata={"description": "`ready` or `not ready`"})
    checks = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String(), required=True,
                            metadata={"description": "each check (`database`, `schema`): `ok` or what is wrong",
                                      "example": {"database": "ok", "schema": "ok"}})


def readiness() -> dict[str, str]:
    """Each check's `ok` or its problem."""
    try:
        with read_sessions()() as s:
            revisions = schema_revision.current(s)
    except SQLAlchemyError as e:
        # The driver's message may name the server and its user: it goes to the log, not to the public.
        log.warning("readyz: the database does not answer: %s", e)
        return {"database": f"unreachable ({type(e).__name__})", "schema": "unknown"}
    heads = schema_revision.heads()
    if revisions == heads:
        return {"database": OK, "schema": OK}
    at = f"at {', '.join(sorted(revisions))}" if revisions else "no alembic revision"
    return {"database": OK, "schema": f"{at}; the newest is {', '.join(sorted(heads))} "
                                      "(run `plugboard db upgrade`)"}


def make_blueprint() -> Blueprint:
    blp = Blueprint(NAME, __name__, url_prefix="", description="Liveness, readiness and metrics (no token).")

    @blp.route("/healthz", endpoint="healthz")
    class Health(MethodView):
        @blp.doc(security=[])
        @blp.response(200, HealthSchema)
        def get(self):
            """Liveness: the process answers (no database)"""
            return {"status": OK}

    @blp.route("/readyz", endpoint="readyz")
    class Ready(MethodView):
        @blp.doc(security=[])
        @blp.response(200, ReadySchema)
        @blp.alt_response(503, schema=ReadySchema, description="Not ready: `checks` names what is not.")
        def get(self):
            """Readiness: the database answers and is at the newest revision"""
            checks = readiness()
            if all(v == OK for v in checks.values()):
                return {"status": "ready", "checks": checks}
            return {"status": "not ready", "checks": checks}, 503

    @blp.route("/metrics", endpoint="metrics")
    class Metrics(MethodView):
        @blp.doc(security=[], responses={"200": {"description": "Prometheus text exposition format",
                                                 "content": {"text/plain": {"schema": {"type": "string"}}}}})
        def get(self):
            """Prometheus metrics (summed over the server's worker processes)"""
            body, content_type = metrics.render()
            return Response(body, content_type=content_type)

    return blp
