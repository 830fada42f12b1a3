"""The engine's Flask application factory. Nothing happens at import time: `create_app(config)` builds
an app that mounts every front -- the native API (/api), the Nova-compatible facade (/v2, /v2.1, /v3)
-- and installs the one fault mapper (engine.faults), which answers each front in its own shape."""
from __future__ import annotations

from typing import Any

from flask import Flask, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import UnsupportedMediaType

from engine import api, faults, nova

DEFAULTS: dict[str, Any] = {
    # Bodies are small JSON documents; anything bigger is refused before it is read.
    "MAX_CONTENT_LENGTH": 1024 * 1024,
}

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _require_json() -> None:
    """A body, when there is one, must be JSON: refuse other content types with a 415 instead of
    reading them as an empty object."""
    if request.method in _BODY_METHODS and (request.content_length or request.get_data(cache=True)):
        if not request.is_json:
            raise UnsupportedMediaType()


def create_app(config: dict[str, Any]) -> Flask:
    """Build the engine's web application.

    `config` must hold `sessions` (a sessionmaker) and `hosts` (a HostClientFactory); any other key
    is a Flask / flask-smorest setting and overrides the defaults.
    """
    missing = [key for key in ("sessions", "hosts") if key not in config]
    if missing:
        raise ValueError(f"create_app: config lacks {', '.join(missing)}")
    app = Flask("engine")
    app.config.update(DEFAULTS)
    app.config.update(config)
    assert isinstance(app.json, DefaultJSONProvider)    # Flask's json_provider_class, not replaced here
    app.json.sort_keys = False  # keep the schemas' field order
    app.before_request(_require_json)
    faults.register(app)
    api.init_app(app)
    nova.init_app(app)
    return app
