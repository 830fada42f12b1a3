"""Log in and out. The password is checked against the user's argon2id hash (engine.credentials); a
login clears whatever the session held before (no fixation) and keeps the user's name, a mark of its
password hash and the time (engine.authn.ui_session checks all three on each request)."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from engine import credentials
from engine.dao import accounts
from engine.ui.context import sessions

PUBLIC = ("login", "login_form")
# Checked against a hash anyway when the user does not exist, so that timing does not say which
# names exist.
_DUMMY_HASH = credentials.hash_password("not a password of anyone")


def _safe_next(target: str | None) -> str:
    """Only a path of this UI: never another site (an open redirect)."""
    if target and target.startswith("/ui/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("ui.vms")


def login_form() -> str:
    return render_template("login.html", next=_safe_next(request.args.get("next")), error=None)


def login() -> Response | tuple[str, int]:
    name = (request.form.get("username") or "").strip()
    password = request.form.get("password") or ""
    with sessions()() as s:
        user = accounts.get_user(s, name) if name else None
        good = credentials.verify_password(user.password_hash if user else _DUMMY_HASH, password)
        if user is None or not user.password_hash or not good:
            return render_template("login.html", next=_safe_next(request.form.get("next")),
                                   error="Wrong user name or password."), 401
        token = session.get("csrf")
        session.clear()
        session.update(credentials.new_login(user.name, user.password_hash))
        if token:
            session["csrf"] = token
    return redirect(_safe_next(request.form.get("next")), 303)


def logout() -> Response:
    session.clear()
    g.pop("principal", None)
    return redirect(url_for("ui.login_form"), 303)


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/login", "login_form", login_form, methods=["GET"])
    bp.add_url_rule("/login", "login", login, methods=["POST"])
    bp.add_url_rule("/logout", "logout", logout, methods=["POST"])
