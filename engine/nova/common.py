"""What the facade's modules share: running a command, the tenant of the request and who acts for it,
links, and the syntax checks of Nova's request bodies (their meaning is the commands' job).

The facade imports commands, dao (reads) and flask -- never engine.api."""
from __future__ import annotations

import inspect
import re
from functools import cache
from typing import Any

from flask import current_app, g, request
from sqlalchemy.orm import Session, sessionmaker

from engine import flavor_specs
from engine import reasons as R
from engine.auth import Principal
from engine.commands.common import load_vm
from engine.dao.models import Vm
from engine.errors import BadRequest, NotFound, Reason

# How each registration of the resource blueprint appears in URLs: /v2/<tenant>, /v2.1/<tenant>, /v3.
MOUNTS = {"v2": "v2", "v2_1": "v2.1", "v2_1_bare": "v2.1", "v3": "v3"}


def sessions() -> sessionmaker[Session]:
    return current_app.config["sessions"]


@cache
def _takes(command: Any, option: str) -> bool:
    return option in inspect.signature(command.execute).parameters


def run(command: Any, **params: Any) -> Any:
    """Run one command module with the app's sessions and hosts, acting as the request's principal
    when the command takes one (VM commands check tenancy in their loader), and with the spare PCIe
    ports setting for the commands that take it (starting a VM)."""
    options: dict[str, Any] = {"principal": principal()} if _takes(command, "principal") else {}
    if _takes(command, "pcie_ports") and current_app.config.get("pcie_ports") is not None:
        options["pcie_ports"] = current_app.config["pcie_ports"]
    return command.execute(sessions(), current_app.config["hosts"], command.Params(**params), **options)


# ---- the tenant ----------------------------------------------------------------------------------

def tenant() -> str | None:
    """The project in the path (/v2/<tenant>, /v2.1/<tenant>); None on /v3, which has none."""
    return g.get("nova_tenant")


def principal() -> Principal:
    """Who acts: the token's user (engine.app authenticated the request and checked that the path's
    tenant is one of its projects before the route ran)."""
    return g.principal


def project_for_new_server() -> str:
    """The path's tenant; on a path without one (/v3, /v2.1/servers) the principal's only project, else
    "default"."""
    return tenant() or principal().home_project or "default"


def visible(s: Session, server_id: str) -> Vm:
    """The server, if the request's principal sees its project (the commands' one loader) and it is
    the path's tenant's; else itemNotFound (ids leak nothing)."""
    vm = load_vm(s, principal(), server_id)
    if tenant() not in (None, vm.project_id):
        reason = R.vm_not_found(server_id)
        raise NotFound(reason.message, reasons=[reason])
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
        self.reasons.append(Reason(R.INVALID_FIELD, f"Invalid input for field/attribute {path}. Value: {value!r}. "
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
        """Nova's key/value pairs (parameter_types.metadata): keys of 1-255 letters, digits, spaces and
        '-', '_', ':', '.', string values (or numbers, kept as given, where Nova takes them: extra specs)."""
        items = self.object(value, path)
        result: dict[str, Any] = {}
        for key, item in items.items():
            if not isinstance(key, str) or not flavor_specs.KEY_RE.match(key):
                self.bad(path, key, "Keys must be 1-255 letters, digits, spaces and '-', '_', ':', '.'")
            elif isinstance(item, bool) or not isinstance(item, (str, int, float) if numbers else str):
                self.bad(f"{path}.{key}", item, "Must be a string" + (" or a number" if numbers else ""))
            else:
                result[key] = item
        return result

    def done(self) -> None:
        if self.reasons:
            raise BadRequest("Invalid input for the request.", reasons=self.reasons)

