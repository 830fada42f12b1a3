"""/api/vms: list, create, get, delete, start, stop."""
from __future__ import annotations

from flask import current_app, url_for
from flask.views import MethodView

from engine.commands import add_vm, allowed, common, remove_vm, run_vm, stop_vm
from engine import reasons as R
from engine.api.common import Blueprint, principal, run, sessions, status_for, visible_vm
from engine.errors import BadRequest, NotFound
from engine.api.schemas import AllowedSchema, EmptySchema, VmCreateSchema, VmQuerySchema, VmSchema, VmStartSchema
from engine.api.views import vm_view


def read(vm_id: str) -> dict:
    with sessions()() as s:
        return vm_view(visible_vm(s, vm_id))


def make_blueprint() -> Blueprint:
    blp = Blueprint("vms", __name__, url_prefix="/api/vms", description="Virtual machines.")

    @blp.route("")
    class Vms(MethodView):
        @blp.arguments(VmQuerySchema, location="query", unknown="raise")
        @blp.response(200, VmSchema(many=True), headers={"Link": {"schema": {"type": "string"}, "description":
                                                                  "The next page, when this one is full."}})
        def get(self, query):
            """List VMs (optionally of one project): those of the caller's projects, every VM for an admin

            By name, a page of at most `limit` (1000 by default and at most); `marker` continues a list."""
            limit = query["limit"]
            with sessions()() as s:
                try:
                    page = common.list_vms(s, principal(), project_id=query.get("project_id"),
                                           marker=query.get("marker"), limit=limit)
                except NotFound:
                    reason = R.invalid_field("marker", [f"no VM {query['marker']} to continue after"])
                    raise BadRequest(f"The request is not valid: {reason.message}", reasons=[reason]) from None
                body = [vm_view(v) for v in page]
            if len(page) < limit:
                return body
            args = {k: v for k, v in query.items() if k != "marker"}
            return body, 200, {"Link": f'<{url_for("vms.Vms", **args, marker=page[-1].id)}>; rel="next"'}

        @blp.arguments(VmCreateSchema)
        @blp.response(201, VmSchema, headers={"Location": {"schema": {"type": "string"}}})
        def post(self, data):
            """Create a VM (down, with no devices)

            In one of the caller's projects: `project_id`, else the caller's only project."""
            home = principal().home_project
            if "project_id" not in data and home is not None:
                data["project_id"] = home
            outcome = run(add_vm, **data)
            return read(outcome.id), 201, {"Location": url_for("vms.VmById", vm_id=outcome.id)}

    @blp.route("/<string:vm_id>")
    class VmById(MethodView):
        @blp.response(200, VmSchema)
        def get(self, vm_id):
            """Get a VM"""
            return read(vm_id)

        @blp.response(204)
        def delete(self, vm_id):
            """Remove a VM (only when down)"""
            run(remove_vm, vm_id=vm_id)
            return None

    @blp.route("/<string:vm_id>/start")
    class VmStart(MethodView):
        @blp.arguments(VmStartSchema, required=False)
        @blp.response(200, VmSchema)
        @blp.alt_response(202, schema=VmSchema, description="Accepted; the VM is still powering up.")
        def post(self, data, vm_id):
            """Start a VM with its activated devices"""
            outcome = run(run_vm, vm_id=vm_id, host_id=data.get("host_id"),
                          _options={"pcie_ports": current_app.config.get("pcie_ports")})
            return read(vm_id), status_for(outcome)

    @blp.route("/<string:vm_id>/stop")
    class VmStop(MethodView):
        @blp.arguments(EmptySchema, required=False)
        @blp.response(200, VmSchema)
        @blp.alt_response(202, schema=VmSchema, description="Accepted; the VM is still powering down.")
        def post(self, _data, vm_id):
            """Stop (destroy) a running VM"""
            outcome = run(stop_vm, vm_id=vm_id)
            return read(vm_id), status_for(outcome)

    @blp.route("/<string:vm_id>/allowed")
    class VmAllowed(MethodView):
        @blp.response(200, AllowedSchema)
        def get(self, vm_id):
            """What the caller may do now with the VM and each of its devices

            For every action, whether the engine would accept it now and, when not, every reason -- the
            same checks the action itself runs. Actions that take input are judged with valid input:
            what is left is what the VM's state allows."""
            return allowed.for_vm(sessions(), principal(), vm_id)

    return blp
