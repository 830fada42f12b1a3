"""/api/hosts: list, register (add_host asks the agent for its capabilities), get, refresh, maintenance,
activate, fence (an unreachable host confirmed rebooted), remove."""
from __future__ import annotations

from flask import url_for
from flask.views import MethodView

from engine.commands import activate_host, add_host, fence_host, host_maintenance, refresh_host, remove_host
from engine.dao import host_devices, hosts as hosts_dao
from engine.api.common import Blueprint, not_found, run, sessions, status_for
from engine.api.schemas import (EmptySchema, HostCreateSchema, HostDeviceQuerySchema, HostDeviceSchema, HostFenceSchema,
                                HostSchema)
from engine.api.views import host_device_view, host_view


def read(host_id: str) -> dict:
    with sessions()() as s:
        host = hosts_dao.get(s, host_id)
        if host is None:
            raise not_found("host", host_id)
        return host_view(host)


def make_blueprint() -> Blueprint:
    blp = Blueprint("hosts", __name__, url_prefix="/api/hosts",
                    description="Hosts: the agents the engine runs VMs on.")

    @blp.route("")
    class Hosts(MethodView):
        @blp.response(200, HostSchema(many=True))
        def get(self):
            """List hosts"""
            with sessions()() as s:
                return [host_view(h) for h in hosts_dao.list(s)]

        @blp.arguments(HostCreateSchema)
        @blp.response(201, HostSchema, headers={"Location": {"schema": {"type": "string"}}})
        def post(self, data):
            """Register a host

            The engine asks the agent for its capabilities; an unreachable agent is a 503 and nothing
            is stored."""
            outcome = run(add_host, name=data["name"], url=data["url"], cluster_id=data.get("cluster_id"))
            return read(outcome.id), 201, {"Location": url_for("hosts.HostById", host_id=outcome.id)}

    @blp.route("/<string:host_id>")
    class HostById(MethodView):
        @blp.response(200, HostSchema)
        def get(self, host_id):
            """Get a host"""
            return read(host_id)

        @blp.response(204)
        def delete(self, host_id):
            """Remove a host in maintenance

            Its device inventory goes with it. Refused while a VM holds or has one of its devices."""
            run(remove_host, host_id=host_id)
            return "", 204

    @blp.route("/<string:host_id>/refresh")
    class HostRefresh(MethodView):
        @blp.arguments(EmptySchema, required=False)
        @blp.response(200, HostSchema)
        def post(self, _data, host_id):
            """Refresh a host's capabilities"""
            outcome = run(refresh_host, host_id=host_id)
            return read(outcome.id or host_id), status_for(outcome)

    @blp.route("/<string:host_id>/maintenance")
    class HostMaintenance(MethodView):
        @blp.arguments(EmptySchema, required=False)
        @blp.response(200, HostSchema)
        def post(self, _data, host_id):
            """Put a host in maintenance

            The monitor stops watching it and no VM starts there. Refused while it runs VMs."""
            run(host_maintenance, host_id=host_id)
            return read(host_id)

    @blp.route("/<string:host_id>/activate")
    class HostActivate(MethodView):
        @blp.arguments(EmptySchema, required=False)
        @blp.response(200, HostSchema)
        def post(self, _data, host_id):
            """Take a host out of maintenance

            Its capabilities and devices are read again; an unreachable agent is a 503 and the host
            stays in maintenance."""
            run(activate_host, host_id=host_id)
            return read(host_id)

    @blp.route("/<string:host_id>/fence")
    class HostFence(MethodView):
        @blp.arguments(HostFenceSchema)
        @blp.response(200, HostSchema)
        def post(self, data, host_id):
            """Confirm that an unreachable host was rebooted

            `{"fence_type": "manual"}`: the administrator's word that the host is down or was
            rebooted. Every VM it ran is marked down and may be started again; the host may then be
            put in maintenance and removed. A VM that in fact still runs there would run twice."""
            run(fence_host, host_id=host_id, fence_type=data["fence_type"])
            return read(host_id)

    @blp.route("/<string:host_id>/devices")
    class HostDevices(MethodView):
        @blp.arguments(HostDeviceQuerySchema, location="query", unknown="raise")
        @blp.response(200, HostDeviceSchema(many=True))
        def get(self, query, host_id):
            """List a host's devices (USB devices and PCI functions), optionally of one capability or status"""
            with sessions()() as s:
                if hosts_dao.get(s, host_id) is None:
                    raise not_found("host", host_id)
                return [host_device_view(d) for d in host_devices.list_for_host(
                    s, host_id, capability=query.get("capability"), status=query.get("status"))]

    return blp
