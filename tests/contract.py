"""The agent's contract (schema/verbs.yaml, schema/errors.yaml) as the test doubles of an agent check it:
the in-memory FakeHost of the engine's unit tier (tests/unit/engine/fakehost.py) and the simulated
agents served over HTTP (tests/sim/agent.py). One place reads the schema, names the error codes and
checks a call's params, so both doubles refuse a bad call with the same coded error."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schema"
INVALID_PARAMS = -32602
METHOD_NOT_FOUND = -32601


@functools.lru_cache(maxsize=None)
def verbs_schema() -> dict[str, Any]:
    return yaml.safe_load((SCHEMA_DIR / "verbs.yaml").read_text())


@functools.lru_cache(maxsize=None)
def error_table() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((SCHEMA_DIR / "errors.yaml").read_text())["errors"]


def error_code(name: str) -> int:
    return int(error_table()[name]["code"])


def error_message(code: int) -> str:
    for entry in error_table().values():
        if entry["code"] == code:
            return str(entry["message"])
    return f"agent error {code}"


def error_name(code: int) -> str | None:
    """The errors.yaml name of `code` (what the agent puts in a JSON-RPC error's data.name)."""
    for name, entry in error_table().items():
        if entry["code"] == code:
            return name
    return None


@functools.lru_cache(maxsize=None)
def validator(verb: str, part: str = "params") -> jsonschema.Draft7Validator:
    """A validator for one verb's params (or result), with the shared definitions in scope."""
    doc = verbs_schema()
    schema = dict(doc["verbs"][verb][part])
    schema["definitions"] = doc["definitions"]
    return jsonschema.Draft7Validator(schema)


def definition_validator(name: str) -> jsonschema.Draft7Validator:
    doc = verbs_schema()
    return jsonschema.Draft7Validator({"$ref": f"#/definitions/{name}", "definitions": doc["definitions"]})


def is_verb(verb: str) -> bool:
    return verb in verbs_schema()["verbs"]


def params_error(verb: str, params: dict[str, Any]) -> str | None:
    """Why `params` break the contract of `verb` (the first offending field), or None when they keep it.
    The agent answers such a call INVALID_PARAMS (-32602) with this message."""
    errors = sorted(validator(verb).iter_errors(params), key=lambda e: list(e.path))
    if not errors:
        return None
    where = "/".join(str(p) for p in errors[0].path) or "(params)"
    return f"Invalid params: {where}: {errors[0].message}"
