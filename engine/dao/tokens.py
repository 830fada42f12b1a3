"""API tokens: a public id and the digest of the whole token (engine.credentials makes both).
Functions take the session first and never commit."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine.dao._cas import rowcount
from engine.dao.models import Token, User, utcnow

__all__ = ["add", "get", "list", "revoke", "is_live"]


def add(s: Session, *, token_id: str, user: User, digest: str, expires_at: datetime,
        description: str = "") -> Token:
    token = Token(id=token_id, user_id=user.id, digest=digest, expires_at=expires_at, description=description)
    s.add(token)
    s.flush()
    return token


def get(s: Session, token_id: str) -> Token | None:
    return s.get(Token, token_id)


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


def is_live(token: Token, now: datetime | None = None) -> bool:
    """Neither revoked nor expired."""
    return token.revoked_at is None and _aware(token.expires_at) > (now or utcnow())
