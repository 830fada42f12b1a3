"""The agent's view of schema/: the verb table and the error table, loaded once on demand."""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml

# Installed copies keep schema/ next to the packages; a checkout has it at the top.
_SCHEMA_DIR = Path(os.environ.get("PLUGBOARD_SCHEMA_DIR", Path(__file__).resolve().parent.parent / "schema"))


@functools.cache
def _load(name: str) -> dict[str, Any]:
    with open(_SCHEMA_DIR / name, encoding="utf-8") as f:
        return yaml.safe_load(f)


def errors() -> dict[str, dict[str, Any]]:
    """name -> {code, message}"""
    return _load("errors.yaml")["errors"]


def verbs() -> dict[str, dict[str, Any]]:
    """verb name -> {params, result, errors}"""
    return _load("verbs.yaml")["verbs"]


def definitions() -> dict[str, Any]:
    return _load("verbs.yaml")["definitions"]


def patterns() -> dict[str, str]:
    """name -> regular expression: the character rules of every string that reaches domain XML."""
    return _load("verbs.yaml")["patterns"]
