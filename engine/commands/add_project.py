"""Create a project (a tenant): the id VMs are created in and the Nova facade's {tenant_id}."""
from __future__ import annotations

import re
from dataclasses import dataclass

from engine import reasons as R
from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common
from engine.commands.outcome import Outcome
from engine.dao import accounts, audit
from engine.errors import Reason
from engine.hostclient import HostClientFactory

# It travels in URLs (/v2.1/<tenant_id>/...): no slashes, nothing to escape.
ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")


@dataclass(frozen=True)
class Params:
    project_id: str
    description: str = ""


def validate(params: Params, *, exists: bool) -> list[Reason]:
    if not isinstance(params.project_id, str) or not ID_RE.match(params.project_id):
        return [R.name_invalid("project", params.project_id, "1-64 letters, digits, '.', '_' or '-'")]
    return [R.name_in_use("project", params.project_id)] if exists else []


def execute(sessions: common.Sessions, hosts: HostClientFactory | None, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    common.require_admin(principal, "add projects")
    with common.audited(sessions, "PROJECT_ADD"), common.unique_name("project", params.project_id):
        with sessions.begin() as s:
            well_formed = isinstance(params.project_id, str) and ID_RE.match(params.project_id) is not None
            found = validate(params, exists=well_formed and accounts.get_project(s, params.project_id) is not None)
            if found:
                raise common.refusal(found, f"Cannot add project {params.project_id}.")
            accounts.add_project(s, params.project_id, params.description)
            audit.record(s, "PROJECT_ADDED", f"Project {params.project_id} added", project=params.project_id)
    return Outcome(id=params.project_id, created=True)
