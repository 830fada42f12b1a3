"""Golden-file comparison of XML in canonical form (C14N 2.0, whitespace-only text stripped).

PLUGBOARD_REGEN_GOLDEN=1 rewrites the golden files from the current output; review the diff before
committing them.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

from lxml import etree

GOLDEN_DIR = Path(__file__).parent / "golden"
FIXTURES_DIR = Path(__file__).parent / "fixtures"
REGEN = os.environ.get("PLUGBOARD_REGEN_GOLDEN") == "1"


def canonical(xml: str) -> str:
    return etree.canonicalize(xml_data=xml, strip_text=True)


def _pretty(xml: str) -> list[str]:
    parser = etree.XMLParser(remove_blank_text=True)
    return etree.tostring(etree.fromstring(canonical(xml).encode(), parser), encoding="unicode",
                          pretty_print=True).splitlines()


def assert_golden(name: str, xml: str) -> None:
    path = GOLDEN_DIR / name
    if REGEN:
        path.write_text(xml if xml.endswith("\n") else xml + "\n", encoding="utf-8")
    assert path.exists(), f"no golden file {path.name}: run with PLUGBOARD_REGEN_GOLDEN=1 and review it"
    expected = path.read_text(encoding="utf-8")
    if canonical(expected) != canonical(xml):
        diff = "\n".join(difflib.unified_diff(_pretty(expected), _pretty(xml), "golden/" + name, "built",
                                              lineterm=""))
        raise AssertionError(f"{name} differs from its golden file:\n{diff}")


def fixture(name: str) -> str:
    return (FIXTURES_DIR / name).read_text(encoding="utf-8")
