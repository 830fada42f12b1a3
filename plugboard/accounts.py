"""`plugboard project add | user add | token create | token revoke | token list`: the engine's users,
projects and API tokens, managed on its database directly (whoever runs these holds the database's
credentials, so acts as an administrator; the audit log names the login as `local:<login>`)."""
from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

DEMO_PROJECT, DEMO_ADMIN = "demo", "admin"


def _operator() -> Any:
    from engine.auth import ADMIN, Principal
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = str(os.getuid())
    return Principal(f"local:{login}", roles=frozenset({ADMIN}))


def _sessions(db_url: str) -> Any:
    from engine.dao import db
    db.upgrade(db_url)
    return db.make_sessions(db.make_engine(db_url))


def _db_url(args: argparse.Namespace) -> str:
    from plugboard import engine_main
    cfg = engine_main._config(args)
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    return cfg.db_url


def _run(command: Any, sessions: Any, **params: Any) -> Any:
    from engine.dao import audit
    who = _operator()
    with audit.acting_as(who.user):
        return command.execute(sessions, None, command.Params(**params), principal=who)


def _refused(err: Any) -> int:
    print(f"plugboard: {err.message}", file=sys.stderr)
    for reason in err.reasons:
        if reason.message not in err.message:
            print(f"  {reason.code}: {reason.message}", file=sys.stderr)
    return 1


def project_add(args: argparse.Namespace) -> int:
    from engine.commands import add_project
    from engine.errors import EngineError
    try:
        _run(add_project, _sessions(_db_url(args)), project_id=args.name, description=args.description or "")
    except EngineError as err:
        return _refused(err)
    print(f"project {args.name} added")
    return 0


def user_add(args: argparse.Namespace) -> int:
    from engine.commands import add_user
    from engine.errors import EngineError
    password = sys.stdin.readline().rstrip("\r\n") if args.password_stdin else None
    try:
        outcome = _run(add_user, _sessions(_db_url(args)), name=args.name, role=args.role, project_id=args.project,
                       password=password)
    except EngineError as err:
        return _refused(err)
    print(f"user {args.name} {'added' if outcome.created else 'updated'}: {args.role} of project {args.project}")
    return 0


def token_create(args: argparse.Namespace) -> int:
    from engine.commands import create_token
    from engine.errors import EngineError
    try:
        issued = _run(create_token, _sessions(_db_url(args)), user=args.user, expires_in_days=args.expires_in,
                      description=args.description or "")
    except EngineError as err:
        return _refused(err)
    print(issued.token)
    print(f"token {issued.id} of {issued.user}, expires {issued.expires_at:%Y-%m-%d %H:%M} UTC; it is shown only "
          f"this once (revoke it with: plugboard token revoke {issued.id})", file=sys.stderr)
    return 0


def token_revoke(args: argparse.Namespace) -> int:
    from engine.commands import revoke_token
    from engine.errors import EngineError
    try:
        outcome = _run(revoke_token, _sessions(_db_url(args)), token_id=args.id)
    except EngineError as err:
        return _refused(err)
    print(f"token {args.id} {'revoked' if outcome.created else 'was already revoked'}")
    return 0


def token_list(args: argparse.Namespace) -> int:
    from engine.dao import accounts, tokens
    sessions = _sessions(_db_url(args))
    with sessions() as s:
        user = accounts.get_user(s, args.user) if args.user else None
        if args.user and user is None:
            print(f"plugboard: user {args.user} does not exist", file=sys.stderr)
            return 1
        print(f"{'ID':<14}{'USER':<20}{'STATE':<9}{'EXPIRES (UTC)':<18}DESCRIPTION")
        for row in tokens.list(s, user):
            state = "revoked" if row.revoked_at else ("live" if tokens.is_live(row) else "expired")
            print(f"{row.id:<14}{row.user.name:<20}{state:<9}{row.expires_at:%Y-%m-%d %H:%M}  {row.description}")
    return 0


def demo_token(db_url: str, path: Path) -> str:
    """`plugboard up`'s administrator: the user "admin", admin of project "demo" (both made once), and
    its token, kept in `path` (mode 0600) and made again when it is missing, expired or revoked."""
    from engine import authn
    from engine.commands import add_project, add_user, create_token
    from engine.dao import accounts
    from engine.errors import Unauthorized
    from engine.vocab import ADMIN

    sessions = _sessions(db_url)
    with sessions() as s:
        has_project = accounts.get_project(s, DEMO_PROJECT) is not None
        user = accounts.get_user(s, DEMO_ADMIN)
        is_admin = user is not None and any(m.project_id == DEMO_PROJECT and m.role == ADMIN
                                            for m in user.memberships)
        if path.exists():
            try:
                authn.by_token(s, path.read_text(encoding="ascii").strip())
                return path.read_text(encoding="ascii").strip()
            except (Unauthorized, UnicodeDecodeError):
                pass
    if not has_project:
        _run(add_project, sessions, project_id=DEMO_PROJECT, description="plugboard up's demo")
    if not is_admin:
        _run(add_user, sessions, name=DEMO_ADMIN, role=ADMIN, project_id=DEMO_PROJECT)
    token = _run(create_token, sessions, user=DEMO_ADMIN, description="plugboard up").token
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(token + "\n")
    return token


def add_parsers(sub: Any) -> None:
    """The `project`, `user` and `token` areas of the command line."""
    from engine.vocab import ROLES

    def db_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="engine TOML file")
        p.add_argument("--db-url", help="SQLAlchemy URL (default SQLite in the state dir)")

    project = sub.add_parser("project", help="the engine's projects").add_subparsers(dest="action", required=True)
    padd = project.add_parser("add", help="add a project (a tenant)")
    padd.add_argument("name")
    padd.add_argument("--description")
    db_options(padd)
    padd.set_defaults(func=project_add)

    user = sub.add_parser("user", help="the engine's users").add_subparsers(dest="action", required=True)
    uadd = user.add_parser("add", help="add a user to a project with a role (or change its role there)")
    uadd.add_argument("name")
    uadd.add_argument("--role", required=True, choices=ROLES)
    uadd.add_argument("--project", required=True)
    uadd.add_argument("--password-stdin", action="store_true", help="read a password from the first line of stdin")
    db_options(uadd)
    uadd.set_defaults(func=user_add)

    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="action", required=True)
    create = token.add_parser("create", help="make a token for a user and print it (once)")
    create.add_argument("--user", required=True)
    create.add_argument("--expires-in", type=int, default=30, metavar="DAYS", help="1-365 (default 30)")
    create.add_argument("--description")
    db_options(create)
    create.set_defaults(func=token_create)
    revoke = token.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("id")
    db_options(revoke)
    revoke.set_defaults(func=token_revoke)
    listing = token.add_parser("list", help="list tokens (ids, users, states; never the tokens)")
    listing.add_argument("--user")
    db_options(listing)
    listing.set_defaults(func=token_list)
