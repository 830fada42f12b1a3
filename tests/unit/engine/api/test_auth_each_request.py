"""Every request reads its token and the user's memberships as they are now (one statement, no
cache in the engine): a token revoked, or a role taken away, between two requests counts at the
second one."""
from __future__ import annotations

from engine.dao import accounts, tokens
from tests.unit.engine.tokens import issue_token


def test_a_token_revoked_between_two_requests_is_refused_at_the_second(anonymous, sessions):
    token = issue_token(sessions, "frank", "admin", "default")
    headers = {"Authorization": f"Bearer {token}"}
    assert anonymous.get("/api/hosts", headers=headers).status_code == 200
    with sessions.begin() as s:
        assert tokens.revoke(s, token.split(".")[1])
    r = anonymous.get("/api/hosts", headers=headers)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_role_taken_away_between_two_requests_counts_at_the_second(anonymous, sessions):
    token = issue_token(sessions, "grace", "admin", "default")
    headers = {"Authorization": f"Bearer {token}"}
    assert anonymous.get("/api/hosts", headers=headers).status_code == 200
    with sessions.begin() as s:
        user = accounts.get_user(s, "grace")
        assert user is not None
        accounts.set_membership(s, user, "default", "member")
    assert anonymous.get("/api/hosts", headers=headers).status_code == 403     # hosts are for admins
    assert anonymous.get("/api/vms", headers=headers).status_code == 200
