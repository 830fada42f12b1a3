"""`plugboard project add | user add | token create | revoke | list` on a SQLite database, and the
demo administrator's token file of `plugboard up`."""
from __future__ import annotations

import io
import stat

import pytest

from engine import authn
from engine.dao import audit, db
from engine.errors import Unauthorized
from plugboard import accounts, cli


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def run(capsys, url: str, *argv: str) -> tuple[int, str, str]:
    code = cli.main([*argv, "--db-url", url])
    out, err = capsys.readouterr()
    return code, out, err


def principal_of(url: str, token: str):
    sessions = db.make_sessions(db.make_engine(url))
    with sessions() as s:
        return authn.by_token(s, token)


def test_user_and_token_lifecycle(capsys, url, monkeypatch):
    assert run(capsys, url, "project", "add", "p1")[0] == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    code, out, _ = run(capsys, url, "user", "add", "alice", "--role", "member", "--project", "p1", "--password-stdin")
    assert code == 0 and "alice added" in out
    code, out, err = run(capsys, url, "token", "create", "--user", "alice", "--expires-in", "2")
    token = out.strip()
    assert code == 0 and token.startswith("pb.") and "shown only this once" in err
    who = principal_of(url, token)
    assert (who.user, who.projects, who.roles) == ("alice", frozenset({"p1"}), frozenset({"member"}))

    code, out, _ = run(capsys, url, "token", "list")
    token_id = token.split(".")[1]
    assert token_id in out and "live" in out and token not in out

    assert run(capsys, url, "token", "revoke", token_id)[1].strip() == f"token {token_id} revoked"
    assert "already revoked" in run(capsys, url, "token", "revoke", token_id)[1]
    with pytest.raises(Unauthorized):
        principal_of(url, token)

    sessions = db.make_sessions(db.make_engine(url))
    with sessions() as s:
        events = audit.list(s)
        assert [e.code for e in events] == ["PROJECT_ADDED", "USER_ADDED", "TOKEN_CREATED", "TOKEN_REVOKED"]
        assert all(e.actor and e.actor.startswith("local:") for e in events)


def test_refusals_are_reported_with_their_reasons(capsys, url):
    code, _, err = run(capsys, url, "user", "add", "bob", "--role", "admin", "--project", "nowhere")
    assert code == 1 and "PROJECT_NOT_FOUND" in err
    code, _, err = run(capsys, url, "token", "create", "--user", "nobody")
    assert code == 1 and "nobody does not exist" in err
    run(capsys, url, "project", "add", "p1")
    run(capsys, url, "user", "add", "bob", "--role", "admin", "--project", "p1")
    code, _, err = run(capsys, url, "token", "create", "--user", "bob", "--expires-in", "0")
    assert code == 1 and "EXPIRY_INVALID" in err
    assert run(capsys, url, "project", "add", "p1")[0] == 1
    assert run(capsys, url, "token", "revoke", "000000000000")[0] == 1


def test_demo_token_is_kept_private_and_reused_until_revoked(tmp_path, url, capsys):
    path = tmp_path / "admin.token"
    token = accounts.demo_token(url, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert principal_of(url, token).is_admin
    assert accounts.demo_token(url, path) == token
    run(capsys, url, "token", "revoke", token.split(".")[1])
    renewed = accounts.demo_token(url, path)
    assert renewed != token and principal_of(url, renewed).user == accounts.DEMO_ADMIN
