"""CSRF: one random token per browser session, sent back by every form (a hidden field) and every htmx
request (the X-CSRF-Token header, from hx-headers on <body>). Unsafe methods without it are refused."""
from __future__ import annotations

import hmac
import secrets

from flask import request, session

from engine.errors import Forbidden, Reason

HEADER = "X-CSRF-Token"
FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_INVALID = "CSRF_TOKEN_INVALID"


def token() -> str:
    """This session's token, made on first use (the login form gets one before anyone logs in)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check() -> None:
    """Refuse (403) an unsafe request whose token is missing or is not the session's."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(HEADER) or request.form.get(FIELD) or ""
    expected = session.get("csrf") or ""
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        message = "The form is missing its security token or it is stale; reload the page and try again."
        raise Forbidden(message, reasons=[Reason(CSRF_INVALID, message, {})])
