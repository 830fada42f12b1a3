"""A pattern that validates a whole string must say so: Python's `$` also matches before a final
newline, so a name, an id or a key that ends in one would pass. Every regular expression compiled
from a literal in the project's code ends in `\\Z` (or is matched with fullmatch), and the REST
schemas validate through engine.api.schemas.Pattern, which keeps `$` for the OpenAPI document (where
it is the end of the string) and matches the whole value."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from engine.api import schemas

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "vdsm_plugin", "plugboard")


def _calls(name: str) -> list[tuple[str, int, str]]:
    """(file, line, pattern) of every call to `<something>.<name>` or `<name>` with a literal first argument."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                arg = node.args[0]
                if called == name and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((str(path.relative_to(ROOT)), node.lineno, arg.value))
    return found


def _ends_in_dollar(pattern: str) -> bool:
    return pattern.endswith("$") and not pattern.endswith(r"\$")


def test_no_compiled_pattern_ends_in_a_dollar():
    compiled = _calls("compile")
    assert len(compiled) > 10      # the scan sees the project's patterns
    assert [c for c in compiled if _ends_in_dollar(c[2])] == []


def test_the_rest_schemas_use_the_whole_string_pattern():
    assert _calls("Regexp") == []
    assert _calls("Pattern")      # the scan sees the schemas


@pytest.mark.parametrize("value, ok", [("56:6f:1a:00:00:09", True), ("56:6f:1a:00:00:09\n", False),
                                       ("x56:6f:1a:00:00:09", False)])
def test_pattern_matches_the_whole_value_and_keeps_its_dollar_for_the_document(value, ok):
    pattern = schemas.Pattern(schemas.MAC_RE)
    assert pattern.regex.pattern.endswith("$")
    if ok:
        assert pattern(value) == value
    else:
        with pytest.raises(Exception, match="match"):
            pattern(value)
