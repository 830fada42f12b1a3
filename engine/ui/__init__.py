"""The web UI under /ui: server-rendered pages (Jinja2) with htmx for partial updates and PatternFly's
CSS, both served from node_modules (engine.ui.assets). It signs in with the engine's users (a signed,
HttpOnly session cookie; engine.authn.ui_session reads it), checks a CSRF token on every unsafe request,
runs the same command modules as the REST API, and greys out what the engine's canDo refuses
(engine.commands.allowed). `init_app(app)` mounts it; engine.app.create_app calls it."""
from __future__ import annotations

import secrets
from pathlib import Path

from flask import Blueprint, Flask, g, redirect, request, url_for
from werkzeug.wrappers import Response

from engine import reasons as R
from engine.auth import Principal
from engine.errors import Forbidden
from engine.ui import admin, assets, csrf, errors, hostdevs, login, pci, secret, vm_page, vms
from engine.ui.cookie import SessionInterface

NAME = "ui"
COOKIE_NAME = "plugboard_ui"

#: Open to anyone: the login form and the browser assets.
PUBLIC_ENDPOINTS = frozenset({f"{NAME}.{e}" for e in login.PUBLIC + assets.ENDPOINTS})
#: Pages for admins only (a member is refused with 403 and a page saying so).
ADMIN_ENDPOINTS = frozenset({f"{NAME}.{e}" for e in admin.ENDPOINTS + hostdevs.ENDPOINTS})


def authorize(principal: Principal, endpoint: str, method: str, path: str) -> None:
    if endpoint in ADMIN_ENDPOINTS and not principal.is_admin:
        reason = R.admin_required(f"{method} {path}")
        raise Forbidden(reason.message, reasons=[reason])


def make_blueprint() -> Blueprint:
    bp = Blueprint(NAME, __name__, url_prefix="/ui", template_folder="templates")
    bp.before_request(csrf.check)
    bp.context_processor(lambda: {"csrf_token": csrf.token, "principal": g.get("principal")})
    bp.add_url_rule("/", "home", lambda: redirect(url_for("ui.vms")))
    for module in (assets, login, vms, vm_page, hostdevs, pci, admin):
        module.register(bp)
    errors.register(bp)
    return bp


def _browser_root() -> Response | None:
    """GET / is the Nova facade's version document for API clients; a browser (asking for HTML before
    JSON) is sent to the UI instead."""
    if request.path == "/" and request.method == "GET":
        best = request.accept_mimetypes.best_match(["application/json", "text/html"])
        if best == "text/html" and any(value == "text/html" for value, _ in request.accept_mimetypes):
            return redirect(url_for("ui.home"))
    return None


def _secret_key(app: Flask) -> bytes | str:
    """SECRET_KEY as given, else the key kept in STATE_DIR, else (tests, no state dir) a key for this
    process only: logins then end with it."""
    if app.config.get("SECRET_KEY"):
        return app.config["SECRET_KEY"]
    if app.config.get("STATE_DIR"):
        return secret.load_or_create(Path(app.config["STATE_DIR"]))
    return secrets.token_hex(32)


def init_app(app: Flask) -> None:
    app.config["SECRET_KEY"] = _secret_key(app)
    # Flask's defaults name these already; the UI's values are set, not defaulted.
    app.config.update(SESSION_COOKIE_NAME=COOKIE_NAME, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    app.session_interface = SessionInterface()
    app.register_blueprint(make_blueprint())
    app.before_request(_browser_root)
