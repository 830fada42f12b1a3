"""/api/osinfo: the OS types the engine knows and what each supports (e.g. NIC hot-plug)."""
from __future__ import annotations

from flask.views import MethodView

from engine import osinfo
from engine.api.common import Blueprint, not_found
from engine.api.schemas import OsInfoSchema
from engine.api.views import os_view


def make_blueprint() -> Blueprint:
    blp = Blueprint("osinfo", __name__, url_prefix="/api/osinfo", description="Operating system types.")

    @blp.route("")
    class OsTypes(MethodView):
        @blp.response(200, OsInfoSchema(many=True))
        def get(self):
            """List OS types"""
            return [os_view(entry) for entry in osinfo.all()]

    @blp.route("/<string:os_id>")
    class OsTypeById(MethodView):
        @blp.response(200, OsInfoSchema)
        def get(self, os_id):
            """Get an OS type"""
            try:
                entry = osinfo.get(os_id)
            except (KeyError, LookupError):
                entry = None
            if entry is None:
                raise not_found("os", os_id)
            return os_view(entry)

    return blp
