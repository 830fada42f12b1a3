"""The agent's error codes, read from schema/errors.yaml (the contract both sides load) instead of
being written as numbers in the engine. `code("noVM")` -> 1."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import yaml

# A checkout keeps schema/ at the top, next to the packages.
SCHEMA_DIR = Path(os.environ.get("PLUGBOARD_SCHEMA_DIR", Path(__file__).resolve().parent.parent / "schema"))
_ERRORS = SCHEMA_DIR / "errors.yaml"


@functools.cache
def _table() -> dict[str, int]:
    with open(_ERRORS, encoding="utf-8") as f:
        return {name: int(entry["code"]) for name, entry in yaml.safe_load(f)["errors"].items()}


def code(name: str) -> int:
    """The code of the agent error `name`; KeyError for a name the contract does not have."""
    return _table()[name]
