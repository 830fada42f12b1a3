"""Credentials for the engine's tests: users with a role in a project and their tokens, written
straight through the dao (no audit events, so tests that read the audit log see only their own), and
test clients that send a token on every request."""
from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from engine import credentials
from engine.dao import accounts, tokens
from engine.dao.models import utcnow


def issue_token(sessions: sessionmaker[Session], user: str = "admin", role: str = "admin",
                project: str = "default", *, expires_in: timedelta = timedelta(days=1)) -> str:
    """A live token of `user`, who gets `role` in `project` (both made when missing)."""
    new = credentials.new_token()
    with sessions.begin() as s:
        if accounts.get_project(s, project) is None:
            accounts.add_project(s, project)
        row = accounts.get_user(s, user) or accounts.add_user(s, user)
        accounts.set_membership(s, row, project, role)
        tokens.add(s, token_id=new.id, user=row, digest=new.digest, expires_at=utcnow() + expires_in)
    return new.token


def authenticated(client: FlaskClient, token: str) -> FlaskClient:
    """Send `token` on every request, the way each front wants it (a request's own headers win)."""
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    client.environ_base["HTTP_X_AUTH_TOKEN"] = token
    return client


def admin_client(app: Flask, sessions: sessionmaker[Session] | None = None) -> FlaskClient:
    """A test client of `app` acting as the administrator "admin"."""
    return authenticated(app.test_client(), issue_token(sessions or app.config["sessions"]))
