"""/api/events: the audit log, oldest first, optionally of one VM and after a known event id."""
from __future__ import annotations

from flask.views import MethodView

from engine.dao import audit as audit_dao
from engine.api.common import Blueprint, principal, sessions
from engine.api.schemas import EventQuerySchema, EventSchema
from engine.api.views import event_view


def make_blueprint() -> Blueprint:
    blp = Blueprint("events", __name__, url_prefix="/api/events", description="Audit events.")

    @blp.route("")
    class Events(MethodView):
        @blp.arguments(EventQuerySchema, location="query", unknown="raise")
        @blp.response(200, EventSchema(many=True))
        def get(self, query):
            """List audit events

            Poll with `after` set to the last id seen to get only newer events. A member sees the
            events of its projects' VMs; an admin sees every event."""
            who = principal()
            with sessions()() as s:
                events = audit_dao.list(s, vm_id=query.get("vm_id"), after_id=query["after"],
                                        limit=query["limit"], code=query.get("code"),
                                        projects=None if who.is_admin else who.projects)
                return [event_view(e) for e in events]

    return blp
