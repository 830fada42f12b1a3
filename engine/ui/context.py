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


#: The app's settings a command takes as options when its execute() names them.
SETTINGS = ("mac_pool", "pcie_ports")


@cache
def _takes(command: Any, option: str) -> bool:
    return option in inspect.signature(command.execute).parameters


def run(command: Any, **params: Any) -> Any:
    """Execute one command module with the app's sessions and hosts, as the request's principal (and
    with the app's SETTINGS for the commands that take them: the MAC pool, the spare PCIe ports)."""
    options: dict[str, Any] = {}
    if _takes(command, "principal"):
        options["principal"] = principal()
    for setting in SETTINGS:
        if _takes(command, setting) and current_app.config.get(setting) is not None:
            options[setting] = current_app.config[setting]
    return command.execute(sessions(), current_app.config["hosts"], command.Params(**params), **options)
