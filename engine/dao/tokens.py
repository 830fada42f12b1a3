"""API tokens: a public id and the digest of the whole token (engine.credentials makes both).
Functions take the session first and never commit."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from engine.dao._cas import Prebuilt, rowcount
from engine.dao.models import Membership, Token, User, utcnow

__all__ = ["add", "get", "lookup", "Holder", "list", "revoke", "is_live"]


def add(s: Session, *, token_id: str, user: User, digest: str, expires_at: datetime,
        description: str = "") -> Token:
    token = Token(id=token_id, user_id=user.id, digest=digest, expires_at=expires_at, description=description)
    s.add(token)
    s.flush()
    return token


def get(s: Session, token_id: str) -> Token | None:
    return s.get(Token, token_id)


@dataclass(frozen=True)
class Holder:
    """What authenticating a request needs of a token: its digest and lifetime, its user's name and
    the user's memberships as (project_id, role) pairs."""

    digest: str
    expires_at: datetime
    revoked_at: datetime | None
    user: str
    memberships: tuple[tuple[str, str], ...]

    @property
    def live(self) -> bool:
        return _live(self.revoked_at, self.expires_at)


def lookup(s: Session, token_id: str) -> Holder | None:
    """The token `token_id` with its user and memberships, read as they are now by one statement on
    the primary key (one row per membership), without loading ORM objects; None when unknown."""
    rows = s.execute(_LOOKUP.statement, {"token_id": token_id}).all()
    if not rows:
        return None
    first = rows[0]
    return Holder(digest=first.digest, expires_at=first.expires_at, revoked_at=first.revoked_at, user=first.name,
                  memberships=tuple((r.project_id, r.role) for r in rows if r.project_id is not None))


def _lookup() -> Any:
    token, user, membership = Token.__table__, User.__table__, Membership.__table__
    return (select(token.c.digest, token.c.expires_at, token.c.revoked_at, user.c.name, membership.c.project_id,
                   membership.c.role)
            .join(user, user.c.id == token.c.user_id)
            .outerjoin(membership, membership.c.user_id == user.c.id)
            .where(token.c.id == bindparam("token_id")))


# Prebuilt: every authenticated request runs it.
_LOOKUP = Prebuilt(_lookup)


def list(s: Session, user: User | None = None) -> Sequence[Token]:  # noqa: A001
    stmt = select(Token)
    if user is not None:
        stmt = stmt.where(Token.user_id == user.id)
    return s.scalars(stmt.order_by(Token.created_at, Token.id)).all()


def revoke(s: Session, token_id: str) -> bool:
    """Revoke the token; True when it was live (an already revoked or unknown token: False)."""
    result = s.execute(update(Token).where(Token.id == token_id, Token.revoked_at.is_(None))
                       .values(revoked_at=utcnow()).execution_options(synchronize_session=False))
    return rowcount(result) == 1


def _aware(moment: datetime) -> datetime:
    # SQLite gives back naive datetimes; every stored one is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _live(revoked_at: datetime | None, expires_at: datetime, now: datetime | None = None) -> bool:
    return revoked_at is None and _aware(expires_at) > (now or utcnow())


def is_live(token: Token, now: datetime | None = None) -> bool:
    """Neither revoked nor expired."""
    return _live(token.revoked_at, token.expires_at, now)
