"""What the facade's modules share: running a command, the tenant of the request and who acts for it,
links, and the syntax checks of Nova's request bodies (their meaning is the commands' job).

The facade imports commands, dao (reads) and flask -- never engine.api."""
from __future__ import annotations

import re
from typing import Any

from flask import current_app, g, request
from sqlalchemy.orm import Session, sessionmaker

from engine.auth import LOCAL_ADMIN, Principal
from engine.dao import vms as vms_dao
from engine.dao.models import Vm
from engine.errors import EngineError, NotFound, Reason

# How each registration of the resource blueprint appears in URLs: /v2/<tenant>, /v2.1/<tenant>, /v3.
MOUNTS = {"v2": "v2", "v2_1": "v2.1", "v3": "v3"}


class BadRequest(EngineError):
    """A Nova request body or query that is not what Nova's API accepts."""

    status = 400
    code = "BAD_REQUEST"


def sessions() -> sessionmaker[Session]:
    return current_app.config["sessions"]


def run(command: Any, *, principal: Principal | None = None, **params: Any) -> Any:
    """Run one command module with the app's sessions and hosts, acting as `principal` when the
    command takes one (VM commands check tenancy in their loader)."""
    options = {"principal": principal} if principal is not None else {}
    return command.execute(sessions(), current_app.config["hosts"], command.Params(**params), **options)


# ---- the tenant ----------------------------------------------------------------------------------

def tenant() -> str | None:
    """The project in the path (/v2/<tenant>, /v2.1/<tenant>); None on /v3, which has none."""
    return g.get("nova_tenant")


def principal() -> Principal:
    """Who acts: a member of the path's project, or -- on /v3, until tokens name a project -- the
    local administrator. (Every request acts as LOCAL_ADMIN until authentication lands; the path's
    tenant still scopes what a request sees, as in Nova.)"""
    project = tenant()
    if project is None:
        return LOCAL_ADMIN
    return Principal(f"nova:{project}", projects=frozenset({project}))


def project_for_new_server() -> str:
    return tenant() or "default"


def visible(s: Session, server_id: str) -> Vm:
    """The server, if the request's principal sees its project; else itemNotFound (ids leak nothing)."""
    vm = vms_dao.get(s, server_id)
    if vm is None or not principal().sees_project(vm.project_id):
        message = f"VM {server_id} does not exist."      # as the commands' loader says it
        raise NotFound(message, reasons=[Reason("VM_NOT_FOUND", message, {"id": server_id})])
    return vm


# ---- links ---------------------------------------------------------------------------------------

def mount() -> str:
    return MOUNTS[(request.blueprint or "").rpartition(".")[2]]


def _tenant_parts() -> list[str]:
    project = tenant()
    return [project] if project else []


def link(*parts: str) -> str:
    """The versioned URL of a resource, e.g. http://host/v2.1/<tenant>/servers/<id>."""
    return request.url_root + "/".join([mount(), *_tenant_parts(), *parts])


def bookmark(*parts: str) -> str:
    """Nova's unversioned bookmark URL, e.g. http://host/<tenant>/servers/<id>."""
    return request.url_root + "/".join([*_tenant_parts(), *parts])


def links(*parts: str) -> list[dict[str, str]]:
    return [{"rel": "self", "href": link(*parts)}, {"rel": "bookmark", "href": bookmark(*parts)}]


# ---- request bodies ------------------------------------------------------------------------------

def json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("Malformed request body.")
    return body


class Checker:
    """Collects every syntax problem of a body as INVALID_FIELD reasons; `done()` raises them at once."""

    def __init__(self) -> None:
        self.reasons: list[Reason] = []

    def bad(self, path: str, value: Any, rule: str) -> None:
        self.reasons.append(Reason("INVALID_FIELD", f"Invalid input for field/attribute {path}. Value: {value!r}. "
                                   f"{rule}.", {"field": path, "value": value, "errors": [rule]}))

    def object(self, value: Any, path: str, *, allowed: tuple[str, ...] | None = None,
               required: tuple[str, ...] = ()) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.bad(path, value, "Must be an object")
            return {}
        for key in required:
            if key not in value:
                self.bad(f"{path}.{key}" if path else key, None, "Required")
        for key in value:
            if allowed is not None and key not in allowed:
                self.bad(f"{path}.{key}" if path else key, value[key],
                         f"Additional properties are not allowed ({key!r} was unexpected)")
        return value

    def string(self, value: Any, path: str, *, max_length: int = 255, pattern: re.Pattern[str] | None = None,
               allow_empty: bool = False) -> str | None:
        if not isinstance(value, str) or (not value and not allow_empty) or len(value) > max_length:
            self.bad(path, value, f"Must be a string of {0 if allow_empty else 1}-{max_length} characters")
            return None
        if pattern is not None and not pattern.match(value):
            self.bad(path, value, "Does not match the allowed pattern")
            return None
        return value

    def integer(self, value: Any, path: str, *, minimum: int = 0) -> int | None:
        """An integer or a string of digits, as Nova accepts."""
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.bad(path, value, f"Must be an integer of at least {minimum}")
            return None
        return value

    def boolean(self, value: Any, path: str) -> bool | None:
        words = {"true": True, "1": True, "yes": True, "on": True,
                 "false": False, "0": False, "no": False, "off": False}
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in words:
            return words[value.lower()]
        self.bad(path, value, "Must be a boolean")
        return None

    def metadata(self, value: Any, path: str, *, numbers: bool = False) -> dict[str, Any]:
        """Nova's key/value pairs: string keys of 1-255 characters, string values (or numbers, kept as
        given, where Nova takes them: extra specs)."""
        items = self.object(value, path)
        result: dict[str, Any] = {}
        for key, item in items.items():
            if not isinstance(key, str) or not 1 <= len(key) <= 255:
                self.bad(path, key, "Keys must be strings of 1-255 characters")
            elif isinstance(item, bool) or not isinstance(item, (str, int, float) if numbers else str):
                self.bad(f"{path}.{key}", item, "Must be a string" + (" or a number" if numbers else ""))
            else:
                result[key] = item
        return result

    def done(self) -> None:
        if self.reasons:
            raise BadRequest("Invalid input for the request.", reasons=self.reasons)

