"""/api/flavors: list, create, get, delete, and set the extra specs (PUT replaces them, PATCH merges).
Members may read flavors; creating, removing and changing them is for admins (engine.api.authorize)."""
from __future__ import annotations

from typing import Any

from flask import url_for
from flask.views import MethodView

from engine.api.common import Blueprint, principal, run, sessions
from engine.api.flavor_schemas import FlavorCreateSchema, FlavorSchema, FlavorSpecsPatchSchema, FlavorSpecsSchema
from engine.commands import add_flavor, common, remove_flavor, set_flavor_specs
from engine.commands.flavor_common import flavor_not_found
from engine.dao.models import Flavor
from engine.errors import NotFound


def flavor_view(f: Flavor) -> dict[str, Any]:
    return {"id": f.id, "name": f.name, "memory_mb": f.memory_mb, "vcpus": f.vcpus, "disk_gb": f.disk_gb,
            "is_public": f.is_public, "extra_specs": dict(f.extra_specs or {}), "created_at": f.created_at}


def read(flavor_id: str) -> dict[str, Any]:
    with sessions()() as s:
        flavor = common.load_flavor(s, principal(), flavor_id)
        if flavor is None:
            reason = flavor_not_found(flavor_id)
            raise NotFound(reason.message, reasons=[reason])
        return flavor_view(flavor)


def make_blueprint() -> Blueprint:
    blp = Blueprint("flavors", __name__, url_prefix="/api/flavors",
                    description="Flavors: VM sizes whose extra specs give VMs devices (USB redirection, "
                                "USB controller).")

    @blp.route("")
    class Flavors(MethodView):
        @blp.response(200, FlavorSchema(many=True))
        def get(self):
            """List flavors"""
            with sessions()() as s:
                return [flavor_view(f) for f in common.list_flavors(s, principal())]

        @blp.arguments(FlavorCreateSchema)
        @blp.response(201, FlavorSchema, headers={"Location": {"schema": {"type": "string"}}})
        def post(self, data):
            """Create a flavor"""
            if "id" in data:
                data["flavor_id"] = data.pop("id")
            outcome = run(add_flavor, **data)
            return read(outcome.id), 201, {"Location": url_for("flavors.FlavorById", flavor_id=outcome.id)}

    @blp.route("/<string:flavor_id>")
    class FlavorById(MethodView):
        @blp.response(200, FlavorSchema)
        def get(self, flavor_id):
            """Get a flavor"""
            return read(flavor_id)

        @blp.response(204)
        def delete(self, flavor_id):
            """Remove a flavor (VMs created from it keep their size and devices)"""
            run(remove_flavor, flavor_id=flavor_id)
            return None

    @blp.route("/<string:flavor_id>/extra_specs")
    class FlavorSpecs(MethodView):
        @blp.arguments(FlavorSpecsSchema)
        @blp.response(200, FlavorSchema)
        def put(self, data, flavor_id):
            """Replace a flavor's extra specs (VMs created afterwards get the new devices)"""
            run(set_flavor_specs, flavor_id=flavor_id, specs=data["extra_specs"], replace=True)
            return read(flavor_id)

        @blp.arguments(FlavorSpecsPatchSchema)
        @blp.response(200, FlavorSchema)
        def patch(self, data, flavor_id):
            """Set some extra specs; a null value removes the key"""
            specs = {k: v for k, v in data["extra_specs"].items() if v is not None}
            unset = tuple(k for k, v in data["extra_specs"].items() if v is None)
            run(set_flavor_specs, flavor_id=flavor_id, specs=specs, unset=unset)
            return read(flavor_id)

    return blp
