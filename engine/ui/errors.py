"""Refusals and failures in the UI: rendered where the action was taken, with every reason and the
host's code and message. Not logged in: the login form (an htmx request is told to go there)."""
from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, session, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from engine import credentials
from engine.errors import EngineError, Reason, Unauthorized


def _is_htmx() -> bool:
    return bool(request.headers.get("HX-Request"))


def unauthorized(_err: Unauthorized) -> Response:
    session.pop(credentials.LOGIN_USER, None)
    target = url_for("ui.login_form", next=request.full_path.rstrip("?") if request.method == "GET" else None)
    if _is_htmx():
        resp = Response(status=401)
        resp.headers["HX-Redirect"] = target
        return resp
    return redirect(target, 303)


def render(status: int, code: str, message: str, reasons: list[Reason], host: dict | None) -> Response:
    template = "_fault.html" if _is_htmx() or request.method != "GET" else "error.html"
    resp = Response(render_template(template, status=status, code=code, message=message,
                                    reasons=[r.to_dict() for r in reasons], host=host), status=status,
                    mimetype="text/html")
    resp.headers["X-PB-Rendered"] = "1"     # ui.js: the engine answered; not a lost connection
    return resp


def engine_error(err: EngineError) -> Response:
    host = None
    if err.host_code is not None or err.host_message is not None:
        host = {"name": err.host, "code": err.host_code, "message": err.host_message}
    return render(err.status, err.code, err.message, list(err.reasons), host)


def http_error(err: HTTPException) -> Response:
    status = err.code or 500
    return render(status, (err.name or "error").upper().replace(" ", "_"), err.description or err.name, [], None)


def register(bp: Blueprint) -> None:
    bp.register_error_handler(Unauthorized, unauthorized)
    bp.register_error_handler(EngineError, engine_error)
    bp.register_error_handler(HTTPException, http_error)
