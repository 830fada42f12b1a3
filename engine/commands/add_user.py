"""Add a user to a project with a role (admin or member), creating the user when it is new. A user
already known gets the role in that project (one role per project) and, when one is given, a new
password. Passwords are stored as argon2id hashes only."""
from __future__ import annotations

import re
from dataclasses import dataclass

from engine import credentials
from engine import reasons as R
from engine.auth import LOCAL_ADMIN, ROLES, Principal
from engine.commands import common
from engine.commands.outcome import Outcome
from engine.dao import accounts, audit
from engine.errors import Reason
from engine.hostclient import HostClientFactory

NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}\Z")
PASSWORD_MIN = 8


@dataclass(frozen=True)
class Params:
    name: str
    role: str
    project_id: str
    password: str | None = None


def validate(params: Params, *, project_exists: bool) -> list[Reason]:
    found: list[Reason] = []
    if not isinstance(params.name, str) or not NAME_RE.match(params.name):
        found.append(R.name_invalid("user", params.name, "1-64 letters, digits, '.', '_', '@' or '-'"))
    if params.role not in ROLES:
        found.append(R.role_unknown(params.role, ROLES))
    if not project_exists:
        found.append(R.project_not_found(params.project_id))
    if params.password is not None and len(params.password) < PASSWORD_MIN:
        found.append(R.password_too_short(PASSWORD_MIN))
    return found


def execute(sessions: common.Sessions, hosts: HostClientFactory | None, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    common.require_admin(principal, "add users")
    with common.audited(sessions, "USER_ADD"), common.unique_name("user", params.name):
        with sessions() as s:
            found = validate(params, project_exists=accounts.get_project(s, params.project_id) is not None)
        if found:
            raise common.refusal(found, f"Cannot add user {params.name}.")
        # Hashing takes tens of milliseconds: done before the write transaction, not inside it.
        password_hash = credentials.hash_password(params.password) if params.password is not None else None
        with sessions.begin() as s:
            user = accounts.get_user(s, params.name)
            created = user is None
            if user is None:
                user = accounts.add_user(s, params.name, password_hash)
            elif password_hash is not None:
                user.password_hash = password_hash
            accounts.set_membership(s, user, params.project_id, params.role)
            audit.record(s, "USER_ADDED" if created else "USER_ROLE_SET",
                         f"User {params.name} is {params.role} of project {params.project_id}",
                         user=params.name, role=params.role, project=params.project_id)
            return Outcome(id=user.id, created=created)
