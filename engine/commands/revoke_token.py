"""Revoke an API token by its public id: every later request with it is a 401."""
from __future__ import annotations

from dataclasses import dataclass

from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common
from engine.commands.outcome import Outcome
from engine.dao import audit, tokens
from engine.errors import NotFound
from engine.hostclient import HostClientFactory


@dataclass(frozen=True)
class Params:
    token_id: str


def execute(sessions: common.Sessions, hosts: HostClientFactory | None, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    """Revoking a revoked token changes nothing and is not an error (Outcome.created is False then)."""
    common.require_admin(principal, "revoke tokens")
    with sessions.begin() as s:
        row = tokens.get(s, params.token_id)
        if row is None:
            raise NotFound(f"Token {params.token_id} does not exist.")
        revoked = tokens.revoke(s, params.token_id)
        if revoked:
            audit.record(s, "TOKEN_REVOKED", f"Token {params.token_id} of user {row.user.name} revoked",
                         token=params.token_id, user=row.user.name)
    return Outcome(id=params.token_id, created=revoked)
