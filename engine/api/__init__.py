"""The native REST API under /api: one flask-smorest blueprint per resource, marshmallow schemas and
the OpenAPI document (GET /api/openapi.json). `init_app(app)` mounts it; `engine.app.create_app`
calls it."""
from __future__ import annotations

from typing import Callable

from flask import Flask
from flask_smorest import Api

from engine.api import clusters, controllers, events, flavors, hosts, nics, osinfo, redirdevs, vms
from engine.api.common import Blueprint
from engine.api.schemas import FaultSchema

# One entry per resource, in the order they appear in the OpenAPI document.
BLUEPRINTS: tuple[Callable[[], Blueprint], ...] = (
    clusters.make_blueprint,
    hosts.make_blueprint,
    vms.make_blueprint,
    nics.make_blueprint,
    controllers.make_blueprint,
    redirdevs.make_blueprint,
    events.make_blueprint,
    osinfo.make_blueprint,
    flavors.make_blueprint,
)

SETTINGS = {
    "API_TITLE": "Plugboard engine",
    "API_VERSION": "1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/api",
    "OPENAPI_JSON_PATH": "openapi.json",
}


class PlugboardApi(Api):
    """flask-smorest's Api with the engine's fault schema; faults are mapped by engine.faults, which
    create_app installs once for every front."""

    ERROR_SCHEMA = FaultSchema

    def _register_error_handlers(self) -> None:
        pass


def init_app(app: Flask) -> None:
    for key, value in SETTINGS.items():
        app.config.setdefault(key, value)
    api = PlugboardApi(app, spec_kwargs={"info": {"description": "Hot- and cold-plug devices of KVM VMs."}})
    for make_blueprint in BLUEPRINTS:
        api.register_blueprint(make_blueprint())
    app.extensions["plugboard.api"] = api
