"""The native REST API under /api: one flask-smorest blueprint per resource, marshmallow schemas and
the OpenAPI document (GET /api/openapi.json). `init_app(app)` mounts it; `engine.app.create_app`
calls it."""
from __future__ import annotations

from typing import Callable

from flask import Flask
from flask_smorest import Api

from engine import reasons as R
from engine.api import (clusters, controllers, events, flavors, hostdevs, hosts, nics, operations, osinfo,
                        pci_attachments, redirdevs, vms)
from engine.api.common import Blueprint
from engine.api.schemas import FaultSchema
from engine.auth import Principal
from engine.errors import Forbidden

# One entry per resource, in the order they appear in the OpenAPI document.
BLUEPRINTS: tuple[Callable[[], Blueprint], ...] = (
    clusters.make_blueprint,
    hosts.make_blueprint,
    vms.make_blueprint,
    nics.make_blueprint,
    controllers.make_blueprint,
    redirdevs.make_blueprint,
    hostdevs.make_blueprint,
    pci_attachments.make_blueprint,
    pci_attachments.make_aliases_blueprint,
    events.make_blueprint,
    osinfo.make_blueprint,
    flavors.make_blueprint,
    operations.make_blueprint,
)

SETTINGS = {
    "API_TITLE": "Plugboard engine",
    "API_VERSION": "1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/api",
    "OPENAPI_JSON_PATH": "openapi.json",
}


# ---- who may use which route (engine.app authenticates, then asks `authorize`) --------------------

#: Open to anyone: the OpenAPI document, and the probes' and Prometheus' /healthz, /readyz and /metrics.
PUBLIC_ENDPOINTS = frozenset({"api-docs.openapi_json"}) | operations.ENDPOINTS
#: A member's routes: its projects' VMs and their devices (the commands' loader checks the project),
#: PCI devices by alias among them (an alias is what an admin allowed), their events, the OS table.
#: Every other route -- hosts, clusters, writing flavors, PCI aliases, and any route added later until
#: it is listed here -- is for admins.
MEMBER_BLUEPRINTS = frozenset({"vms", "nics", "controllers", "redirdevs", "pci_attachments", "events", "osinfo"})
#: Read by members too: the flavors a VM may be created from, as Nova lets its users list them.
MEMBER_READS = frozenset({"flavors"})
READS = frozenset({"GET", "HEAD", "OPTIONS"})


def authorize(principal: Principal, endpoint: str, method: str, path: str) -> None:
    """Raise Forbidden (403, ADMIN_REQUIRED) when a member asks for an admin's route."""
    blueprint = endpoint.partition(".")[0]
    if principal.is_admin or blueprint in MEMBER_BLUEPRINTS or (blueprint in MEMBER_READS and method in READS):
        return
    reason = R.admin_required(f"{method} {path}")
    raise Forbidden(reason.message, reasons=[reason])


class PlugboardApi(Api):
    """flask-smorest's Api with the engine's fault schema; faults are mapped by engine.faults, which
    create_app installs once for every front."""

    ERROR_SCHEMA = FaultSchema

    def _register_error_handlers(self) -> None:
        pass


def init_app(app: Flask) -> None:
    for key, value in SETTINGS.items():
        app.config.setdefault(key, value)
    # Every operation needs the bearer token (the document itself is public).
    api = PlugboardApi(app, spec_kwargs={"info": {"description": "Hot- and cold-plug devices of KVM VMs."},
                                         "security": [{"bearerToken": []}]})
    api.spec.components.security_scheme("bearerToken", {"type": "http", "scheme": "bearer",
                                                        "description": "`plugboard token create --user NAME`"})
    for make_blueprint in BLUEPRINTS:
        api.register_blueprint(make_blueprint())
    app.extensions["plugboard.api"] = api
