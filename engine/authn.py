"""Authentication: from what a request presents to the `Principal` it acts as.

A front lists its resolvers in order (the native API: a bearer token; the Nova facade: X-Auth-Token;
the web UI: its session cookie). Each resolver looks for its own credential and answers
None when there is none, a Principal when it is valid, or raises Unauthorized when it is presented but
not valid -- a bad credential is never passed over for the next one. No Flask here: engine.app hands
over the request's headers and cookies."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from engine import credentials
from engine import reasons as R
from engine.auth import Principal
from engine.dao import accounts
from engine.dao import tokens as tokens_dao
from engine.dao.models import User
from engine.errors import Unauthorized


@dataclass(frozen=True)
class Presented:
    """What a request carries that may identify its sender: `header(name)` looks a header up without
    regard to case (werkzeug's Headers.get), or answers None."""

    header: Callable[[str], str | None]
    cookies: Mapping[str, str] = field(default_factory=dict)
    #: the web UI's session, already read from its signed cookie (a forged or tampered cookie reads empty)
    session: Mapping[str, Any] = field(default_factory=dict)


Resolver = Callable[[Session, Presented], Principal | None]


def principal_of(user: User) -> Principal:
    """A user's principal: its projects, and its roles over all of them (admin anywhere is admin)."""
    return Principal(user.name, roles=frozenset(m.role for m in user.memberships),
                     projects=frozenset(m.project_id for m in user.memberships))


def invalid() -> Unauthorized:
    reason = R.credential_invalid()
    return Unauthorized(reason.message, reasons=[reason])


def by_token(s: Session, token: str) -> Principal:
    """The principal of a live token, else Unauthorized. The lookup is by the token's public id (one
    statement, on every request: a revoked or expired token, or a changed membership, counts at once)
    and the digests are compared in constant time."""
    token_id = credentials.token_id_of(token.strip())
    holder = tokens_dao.lookup(s, token_id) if token_id else None
    if holder is None or not credentials.digest_matches(holder.digest, token.strip()) or not holder.live:
        raise invalid()
    return Principal(holder.user, roles=frozenset(role for _, role in holder.memberships),
                     projects=frozenset(project for project, _ in holder.memberships))


def bearer(s: Session, presented: Presented) -> Principal | None:
    """`Authorization: Bearer <token>` (RFC 6750)."""
    header = presented.header("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise invalid()
    return by_token(s, token)


def x_auth_token(s: Session, presented: Presented) -> Principal | None:
    """`X-Auth-Token: <token>`, as Keystone's tokens travel to Nova."""
    token = presented.header("X-Auth-Token")
    if token is None:
        return None
    return by_token(s, token)


def ui_session(s: Session, presented: Presented) -> Principal | None:
    """The web UI's session cookie: a user who logged in less than credentials.LOGIN_LIFETIME ago and
    has not changed its password since. No login in the session: None."""
    name = presented.session.get(credentials.LOGIN_USER)
    if name is None:
        return None
    user = accounts.get_user(s, str(name))
    if user is None or not credentials.login_is_live(presented.session, user.password_hash):
        raise invalid()
    return principal_of(user)


def resolve(s: Session, presented: Presented, resolvers: Sequence[Resolver]) -> Principal | None:
    """The principal of the first resolver that finds its credential; None when none is presented."""
    for resolver in resolvers:
        principal = resolver(s, presented)
        if principal is not None:
            return principal
    return None
