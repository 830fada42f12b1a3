"""The agent's patterns for the strings that reach a domain's XML (schema/verbs.yaml, `patterns`),
read from the contract so that the engine refuses at once what the agent would refuse at start time
-- a VM that could never run -- without a second copy of any expression. `matches("text", v)`."""
from __future__ import annotations

import functools
import re

import yaml

from engine.agent_codes import SCHEMA_DIR

_VERBS = SCHEMA_DIR / "verbs.yaml"


def _whole_string(pattern: str) -> str:
    """JSON Schema's final `$` is the end of the string; Python's `$` also matches before a final
    newline, so it becomes `\\Z`."""
    return pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern


@functools.cache
def _table() -> dict[str, re.Pattern[str]]:
    with open(_VERBS, encoding="utf-8") as f:
        return {name: re.compile(_whole_string(p)) for name, p in yaml.safe_load(f)["patterns"].items()}


def matches(name: str, value: object) -> bool:
    """Whether `value` is a string the contract's pattern `name` accepts (KeyError: no such pattern)."""
    return isinstance(value, str) and _table()[name].match(value) is not None
