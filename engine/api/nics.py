"""/api/vms/{vm_id}/nics: a VM's NICs, and their activate / deactivate actions (hot-plug and
hot-unplug when the VM runs, the plugged flag alone when it is down)."""
from __future__ import annotations

from flask import current_app, url_for
from flask.views import MethodView

from engine.commands import add_nic, plug_unplug_nic, remove_nic, update_nic
from engine.dao import nics as nics_dao
from engine.dao import vms as vms_dao
from engine.api.common import Blueprint, not_found, run, sessions, status_for
from engine.api.schemas import EmptySchema, NicCreateSchema, NicSchema, NicUpdateSchema
from engine.api.views import nic_view


def read(vm_id: str, nic_id: str) -> dict:
    with sessions()() as s:
        nic = nics_dao.get(s, vm_id, nic_id)
        if nic is None:
            if vms_dao.get(s, vm_id) is None:
                raise not_found("vm", vm_id)
            raise not_found("nic", nic_id)
        return nic_view(nic)


def make_blueprint() -> Blueprint:
    blp = Blueprint("nics", __name__, url_prefix="/api/vms/<string:vm_id>/nics",
                    description="A VM's network interfaces and their hot-plug.")

    @blp.route("")
    class Nics(MethodView):
        @blp.response(200, NicSchema(many=True))
        def get(self, vm_id):
            """List a VM's NICs"""
            with sessions()() as s:
                if vms_dao.get(s, vm_id) is None:
                    raise not_found("vm", vm_id)
                return [nic_view(n) for n in nics_dao.list_for_vm(s, vm_id)]

        @blp.arguments(NicCreateSchema)
        @blp.response(201, NicSchema, headers={"Location": {"schema": {"type": "string"}}})
        def post(self, data, vm_id):
            """Add a NIC

            With `active` (the default) the NIC is plugged: at once when the VM runs, at its next start
            otherwise. If the host refuses the hot-plug, the answer is the host's fault and the NIC
            stays, deactivated, with its last_error."""
            outcome = run(add_nic, vm_id=vm_id, _options={"mac_pool": current_app.config.get("mac_pool")}, **data)
            headers = {"Location": url_for("nics.NicById", vm_id=vm_id, nic_id=outcome.id)}
            return read(vm_id, outcome.id), 201, headers

    @blp.route("/<string:nic_id>")
    class NicById(MethodView):
        @blp.response(200, NicSchema)
        def get(self, vm_id, nic_id):
            """Get a NIC"""
            return read(vm_id, nic_id)

        @blp.arguments(NicUpdateSchema)
        @blp.response(200, NicSchema)
        def put(self, data, vm_id, nic_id):
            """Update a NIC (only the fields sent)

            Refused while the VM runs with the NIC plugged, except a change of `linked` alone,
            which is applied live."""
            return self._update(data, vm_id, nic_id)

        @blp.arguments(NicUpdateSchema)
        @blp.response(200, NicSchema)
        def patch(self, data, vm_id, nic_id):
            """Update a NIC (only the fields sent)"""
            return self._update(data, vm_id, nic_id)

        @staticmethod
        def _update(data, vm_id, nic_id):
            outcome = run(update_nic, vm_id=vm_id, nic_id=nic_id, **data)
            return read(vm_id, nic_id), status_for(outcome)

        @blp.response(204)
        def delete(self, vm_id, nic_id):
            """Remove a NIC (only when the VM is down or the NIC is deactivated)"""
            run(remove_nic, vm_id=vm_id, nic_id=nic_id)
            return None

    @blp.route("/<string:nic_id>/activate")
    class NicActivate(MethodView):
        @blp.arguments(EmptySchema, required=False)
        @blp.response(200, NicSchema)
        def post(self, _data, vm_id, nic_id):
            """Activate (plug) a NIC"""
            return _plug(vm_id, nic_id, True)

    @blp.route("/<string:nic_id>/deactivate")
    class NicDeactivate(MethodView):
        @blp.arguments(EmptySchema, required=False)
        @blp.response(200, NicSchema)
        @blp.alt_response(202, schema=NicSchema,
                          description="The guest has not released the NIC yet: plug_state is 'unplugging' "
                                      "until the host reports the removal.")
        def post(self, _data, vm_id, nic_id):
            """Deactivate (unplug) a NIC"""
            return _plug(vm_id, nic_id, False)

    return blp


def _plug(vm_id: str, nic_id: str, plug: bool):
    outcome = run(plug_unplug_nic, vm_id=vm_id, nic_id=nic_id, plug=plug)
    return read(vm_id, nic_id), status_for(outcome)
