"""What every resource module needs: the Blueprint class, the app's sessions and host clients, running
a command, and the 404 for an id that names nothing."""
from __future__ import annotations

import inspect
from functools import cache
from typing import Any

import flask_smorest
from flask import current_app, g
from sqlalchemy.orm import Session, sessionmaker
from webargs.flaskparser import FlaskParser

from engine.auth import Principal
from engine.commands.common import load_vm
from engine.dao.models import Vm
from engine.errors import NotFound, Reason


class _Parser(FlaskParser):
    # Syntax errors in a request are a 400 (the fault handler answers BAD_REQUEST), not webargs' 422.
    DEFAULT_VALIDATION_STATUS = 400


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint whose request parsing fails with 400, as the OpenAPI document says."""

    ARGUMENTS_PARSER = _Parser()

    def arguments(self, schema: Any, *args: Any, **kwargs: Any) -> Any:
        # webargs makes a new instance of a schema class for every request it parses; the one made
        # here serves them all (a schema keeps no state between loads).
        return super().arguments(schema() if isinstance(schema, type) else schema, *args, **kwargs)


NOT_FOUND_REASONS = {"vm": "VM_NOT_FOUND", "nic": "NIC_NOT_FOUND", "host": "HOST_NOT_FOUND",
                     "cluster": "CLUSTER_NOT_FOUND", "os": "OS_NOT_FOUND"}


def sessions() -> sessionmaker[Session]:
    return current_app.config["sessions"]


def read_sessions() -> sessionmaker[Session]:
    """Sessions for transactions that only read (see engine.dao.db.read_sessions)."""
    return current_app.config["read_sessions"]


def hosts() -> Any:
    return current_app.config["hosts"]


def principal() -> Principal:
    """Who the request acts as (engine.app authenticated it before the route ran)."""
    return g.principal


def visible_vm(s: Session, vm_id: str) -> Vm:
    """A VM the request's principal sees, else 404 VM_NOT_FOUND: the commands' one loader."""
    return load_vm(s, principal(), vm_id)


@cache
def _takes_principal(command: Any) -> bool:
    return "principal" in inspect.signature(command.execute).parameters


def run(command: Any, _options: dict[str, Any] | None = None, **params: Any) -> Any:
    """Run one command module: build its Params and execute it with the app's sessions and hosts
    (plus any settings the command takes, such as the MAC pool), acting as the request's principal
    when the command takes one (every command on a VM does: its loader checks the project)."""
    options = {k: v for k, v in (_options or {}).items() if v is not None}
    if _takes_principal(command):
        options["principal"] = principal()
    return command.execute(sessions(), hosts(), command.Params(**params), **options)


def not_found(kind: str, ident: str) -> NotFound:
    label = {"vm": "VM", "nic": "NIC", "os": "OS type"}.get(kind, kind)
    return NotFound(f"{label} {ident} does not exist.",
                    reasons=[Reason(NOT_FOUND_REASONS[kind], f"{label} {ident} does not exist.", {"id": ident})])


def status_for(outcome: Any) -> int:
    if getattr(outcome, "created", False):
        return 201
    if getattr(outcome, "pending", False):
        return 202
    return 200
