"""The engine's Flask application factory. Nothing happens at import time: `create_app(config)` builds
an app, its OpenAPI document (GET /api/openapi.json) and one blueprint per resource."""
from __future__ import annotations

from typing import Any, Callable

from flask import Flask, request
from flask_smorest import Api
from werkzeug.exceptions import UnsupportedMediaType

from engine.rest import clusters, events, faults, hosts, nics, osinfo, vms
from engine.rest.common import Blueprint
from engine.rest.schemas import FaultSchema

# One entry per resource, in the order they appear in the OpenAPI document.
BLUEPRINTS: tuple[Callable[[], Blueprint], ...] = (
    clusters.make_blueprint,
    hosts.make_blueprint,
    vms.make_blueprint,
    nics.make_blueprint,
    events.make_blueprint,
    osinfo.make_blueprint,
)

DEFAULTS: dict[str, Any] = {
    "API_TITLE": "Plugboard engine",
    "API_VERSION": "1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/api",
    "OPENAPI_JSON_PATH": "openapi.json",
    # Bodies are small JSON documents; anything bigger is refused before it is read.
    "MAX_CONTENT_LENGTH": 1024 * 1024,
}

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class PlugboardApi(Api):
    """flask-smorest's Api with the engine's fault handler and fault schema instead of its own."""

    ERROR_SCHEMA = FaultSchema

    def _register_error_handlers(self) -> None:
        faults.register(self._app)


def _require_json() -> None:
    """A body, when there is one, must be JSON: refuse other content types with a 415 instead of
    reading them as an empty object."""
    if request.method in _BODY_METHODS and (request.content_length or request.get_data(cache=True)):
        if not request.is_json:
            raise UnsupportedMediaType()


def create_app(config: dict[str, Any]) -> Flask:
    """Build the REST application.

    `config` must hold `sessions` (a sessionmaker) and `hosts` (a HostClientFactory); any other key
    is a Flask / flask-smorest setting and overrides the defaults above.
    """
    missing = [key for key in ("sessions", "hosts") if key not in config]
    if missing:
        raise ValueError(f"create_app: config lacks {', '.join(missing)}")
    app = Flask("engine.rest")
    app.config.update(DEFAULTS)
    app.config.update(config)
    app.json.sort_keys = False  # keep the schemas' field order
    app.before_request(_require_json)
    api = PlugboardApi(app, spec_kwargs={"info": {"description": "Hot- and cold-plug devices of KVM VMs."}})
    for make_blueprint in BLUEPRINTS:
        api.register_blueprint(make_blueprint())
    app.extensions["plugboard.api"] = api
    return app
