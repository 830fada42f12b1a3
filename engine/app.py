"""The engine's Flask application factory. Nothing happens at import time: `create_app(config)` builds
an app that mounts every front -- the native API (/api), the Nova-compatible facade (/v2, /v2.1, /v3),
the web UI (/ui) -- installs the one fault mapper (engine.faults), which answers each front in its own
shape, and authenticates every request in one place (`_authenticate`), before any route runs."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, g, request, session
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import UnsupportedMediaType

from engine import api, authn, faults, nova, requestid, ui
from engine import reasons as R
from engine.auth import Principal
from engine.dao import audit, db
from engine.errors import Unauthorized

DEFAULTS: dict[str, Any] = {
    # Bodies are small JSON documents; anything bigger is refused before it is read.
    "MAX_CONTENT_LENGTH": 1024 * 1024,
}

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _require_json() -> None:
    """A body, when there is one, must be JSON: refuse other content types with a 415 instead of
    reading them as an empty object."""
    if request.blueprint == ui.NAME:
        return      # the UI posts HTML forms
    if request.method in _BODY_METHODS and (request.content_length or request.get_data(cache=True)):
        if not request.is_json:
            raise UnsupportedMediaType()


@dataclass(frozen=True)
class Front:
    """How one front authenticates and authorizes: its credentials, in the order they are tried, the
    challenge of its 401s, its public routes, and its role policy (raises Forbidden)."""

    resolvers: tuple[authn.Resolver, ...]
    wanted: str
    challenge: str
    public: frozenset[str]
    authorize: Callable[[Principal, str, str, str], None]


#: The native API takes tokens only, never the UI's cookie: a cookie rides along with cross-site requests,
#: and the UI runs the commands itself, so the API needs no CSRF defence.
NATIVE = Front((authn.bearer,), "send Authorization: Bearer <token>", 'Bearer realm="plugboard"',
               api.PUBLIC_ENDPOINTS, api.authorize)
NOVA = Front((authn.x_auth_token,), "send X-Auth-Token: <token>", 'X-Auth-Token realm="plugboard"',
             nova.PUBLIC_ENDPOINTS, nova.authorize)
UI = Front((authn.ui_session,), "log in at /ui/login", 'Cookie realm="plugboard"', ui.PUBLIC_ENDPOINTS,
           ui.authorize)


def _front() -> Front:
    top = (request.blueprint or "").partition(".")[0]
    return NOVA if top == nova.NAME else UI if top == ui.NAME else NATIVE


def _authenticate() -> None:
    """Who the request acts as (g.principal): every route but the front's public ones needs a valid
    credential (else 401 with the front's challenge), then the front's policy may refuse it (403).
    A URL no route matches goes on to its 404 or 405. Audit events the request writes name the user."""
    if request.url_rule is None or request.endpoint is None:
        return
    front = _front()
    if request.endpoint in front.public:
        return
    challenge = {"WWW-Authenticate": front.challenge}
    try:
        with current_app.config["read_sessions"]() as s:
            presented = authn.Presented(request.headers.get, request.cookies, session if front is UI else {})
            principal = authn.resolve(s, presented, front.resolvers)
    except Unauthorized as err:
        err.headers.update(challenge)
        raise
    if principal is None:
        reason = R.credential_missing(front.wanted)
        raise Unauthorized(reason.message, reasons=[reason], headers=challenge)
    front.authorize(principal, request.endpoint, request.method, request.path)
    g.principal = principal
    g.audit_actor = audit.set_actor(principal.user)


def _bind_request_id() -> None:
    """The request's id (the client's X-Request-Id when sane, else a new one) for every record this
    thread logs and every host call it makes (engine.requestid), until the request ends."""
    g.request_id = requestid.accept(request.headers.get(requestid.HEADER))
    g.request_id_token = requestid.bind(g.request_id)


def _send_request_id(response: Response) -> Response:
    if "request_id" in g:
        response.headers[requestid.HEADER] = g.request_id
    return response


def _unbind_request_id(_exc: BaseException | None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        requestid.unbind(token)


def _forget_actor(_exc: BaseException | None) -> None:
    actor = g.pop("audit_actor", None)
    if actor is not None:
        audit.reset_actor(actor)


def create_app(config: dict[str, Any]) -> Flask:
    """Build the engine's web application.

    `config` must hold `sessions` (a sessionmaker) and `hosts` (a HostClientFactory); any other key
    is a Flask / flask-smorest setting and overrides the defaults. `read_sessions`, the sessions of
    transactions that only read (authentication, reads after a command), default to
    db.read_sessions(sessions).
    """
    missing = [key for key in ("sessions", "hosts") if key not in config]
    if missing:
        raise ValueError(f"create_app: config lacks {', '.join(missing)}")
    app = Flask("engine")
    app.config.update(DEFAULTS)
    app.config.update(config)
    app.config.setdefault("read_sessions", db.read_sessions(app.config["sessions"]))
    assert isinstance(app.json, DefaultJSONProvider)    # Flask's json_provider_class, not replaced here
    app.json.sort_keys = False  # keep the schemas' field order
    app.before_request(_bind_request_id)  # first: what authentication logs carries the id too
    app.before_request(_authenticate)     # then: an anonymous request learns nothing else
    app.before_request(_require_json)
    app.after_request(_send_request_id)
    app.teardown_request(_forget_actor)
    app.teardown_request(_unbind_request_id)
    faults.register(app)
    api.init_app(app)
    nova.init_app(app)
    ui.init_app(app)
    return app
