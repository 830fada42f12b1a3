"""Create an API token for a user. The token is in the answer once; only its digest is stored
(engine.credentials). Every token expires."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from engine import credentials
from engine import reasons as R
from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common
from engine.dao import audit, tokens
from engine.dao import accounts
from engine.dao.models import utcnow
from engine.errors import NotFound, Reason
from engine.hostclient import HostClientFactory

DEFAULT_DAYS = 30
MAX_DAYS = 365


@dataclass(frozen=True)
class Params:
    user: str
    expires_in_days: int = DEFAULT_DAYS
    description: str = ""


@dataclass(frozen=True)
class Issued:
    id: str
    token: str
    user: str
    expires_at: datetime


def validate(params: Params) -> list[Reason]:
    days = params.expires_in_days
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        return [R.expiry_invalid(days, MAX_DAYS)]
    if len(params.description or "") > 255:
        return [R.field_invalid("description", params.description, "at most 255 characters")]
    return []


def execute(sessions: common.Sessions, hosts: HostClientFactory | None, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Issued:
    common.require_admin(principal, "create tokens")
    with common.audited(sessions, "TOKEN_CREATE"):
        found = validate(params)
        if found:
            raise common.refusal(found, f"Cannot create a token for {params.user}.")
        new = credentials.new_token()
        with sessions.begin() as s:
            user = accounts.get_user(s, params.user)
            if user is None:
                raise NotFound(f"User {params.user} does not exist.")
            row = tokens.add(s, token_id=new.id, user=user, digest=new.digest, description=params.description,
                             expires_at=utcnow() + timedelta(days=params.expires_in_days))
            audit.record(s, "TOKEN_CREATED", f"Token {new.id} created for user {user.name}", token=new.id,
                         user=user.name, expires_at=row.expires_at.isoformat())
            return Issued(new.id, new.token, user.name, row.expires_at)
