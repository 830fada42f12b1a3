"""What every UI module needs from the request: the app's sessions and host clients, who acts, and
running one command module as the REST API runs it (engine/api/common.py `run`)."""
from __future__ import annotations

import inspect
from functools import cache
from typing import Any

from flask import current_app, g
from sqlalchemy.orm import Session, sessionmaker

from engine.auth import Principal


def sessions() -> sessionmaker[Session]:
    return current_app.config["sessions"]


def principal() -> Principal:
    """Who the request acts as (engine.app authenticated it before the view ran)."""
    return g.principal


@cache
def _takes(command: Any, option: str) -> bool:
    return option in inspect.signature(command.execute).parameters


def run(command: Any, **params: Any) -> Any:
    """Execute one command module with the app's sessions and hosts, as the request's principal (and
    with the MAC pool for the commands that take it)."""
    options: dict[str, Any] = {}
    if _takes(command, "principal"):
        options["principal"] = principal()
    if _takes(command, "mac_pool") and current_app.config.get("mac_pool") is not None:
        options["mac_pool"] = current_app.config["mac_pool"]
    return command.execute(sessions(), current_app.config["hosts"], command.Params(**params), **options)
