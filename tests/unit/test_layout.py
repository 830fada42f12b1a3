"""The import rules of DESIGN.md's layout table, checked from the import graph (every `import` and
`from ... import` of every module, read with ast), both ways: what a package may import, and which
packages may import a given library or package."""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STDLIB = frozenset(__import__("sys").stdlib_module_names)

# The engine's leaf modules: words, errors, contract codes, principal, small pure tables.
ENGINE_LEAVES = ("engine.vocab", "engine.errors", "engine.reasons", "engine.agent_codes", "engine.agent_patterns",
                 "engine.auth",
                 "engine.hostclient", "engine.osinfo", "engine.usb", "engine.pci_aliases",
                 # the metric definitions: prometheus-client only, so devices and the monitor may count
                 "engine.metrics")
ENGINE_CORE = ENGINE_LEAVES + ("engine.scheduler", "engine.macpool", "engine.flavor_specs", "engine.config",
                                "engine.credentials")

#: package prefix -> the project modules it may import (a prefix allows its submodules).
MAY_IMPORT: dict[str, tuple[str, ...]] = {
    "engine.dao": ("engine.dao", "engine.vocab"),
    "engine.devices": ("engine.devices", "engine.dao") + ENGINE_LEAVES,
    "engine.commands": ("engine.commands", "engine.devices", "engine.dao") + ENGINE_CORE,
    "engine.monitor": ("engine.monitor", "engine.devices", "engine.dao") + ENGINE_LEAVES,
    "engine.api": ("engine.api", "engine.commands", "engine.dao", "engine.devices.kinds", "engine.faults")
                  + ENGINE_CORE,
    "engine.nova": ("engine.nova", "engine.commands", "engine.dao", "engine.faults") + ENGINE_CORE,
    "engine.ui": ("engine.ui", "engine.commands", "engine.dao", "engine.devices.kinds") + ENGINE_CORE,
    # domxml and the hook runner raise the agent's one error type by name (vdsm_plugin.errors); they
    # never import libvirt, the verbs or the server.
    "vdsm_plugin.domxml": ("vdsm_plugin.domxml", "vdsm_plugin.errors"),
    "vdsm_plugin.hooks": ("vdsm_plugin.hooks", "vdsm_plugin.errors"),
    "engine": ("engine",),
    "vdsm_plugin": ("vdsm_plugin",),
    "plugboard": ("plugboard", "engine", "vdsm_plugin"),
}

#: library -> the only project packages that may import it.
ONLY_IN: dict[str, tuple[str, ...]] = {
    "libvirt": ("vdsm_plugin.virt",),
    "flask": ("engine.api", "engine.nova", "engine.ui", "engine.app", "engine.faults"),
    "flask_smorest": ("engine.api",),
    "marshmallow": ("engine.api", "engine.faults"),
    "vdsm_plugin": ("vdsm_plugin", "plugboard"),
    "engine": ("engine", "plugboard"),
    # SQL lives in the dao; others may name its session types and errors only.
    "sqlalchemy": ("engine.dao",),
    "prometheus_client": ("engine.metrics",),
}
SQLALCHEMY_TYPES = ("sqlalchemy.orm", "sqlalchemy.exc")
HOOK_LIBS = ("lxml",)


def modules() -> Iterator[tuple[str, Path]]:
    for top in ("engine", "vdsm_plugin", "plugboard"):
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            yield ".".join(p for p in parts if p != "__init__"), path


def imports_of(name: str, path: Path, module_names: set[str]) -> set[str]:
    """The modules `name` imports: `from engine import reasons` is engine.reasons, `from engine.dao.models
    import Vm` is engine.dao.models."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in module_names else base)
    return found


MODULES = dict(modules())
GRAPH = {name: imports_of(name, path, set(MODULES)) for name, path in MODULES.items()}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def rule_for(name: str) -> tuple[str, ...]:
    prefix = max((p for p in MAY_IMPORT if within(name, p)), key=len)
    return MAY_IMPORT[prefix]


def project(imported: str) -> bool:
    return within(imported, "engine") or within(imported, "vdsm_plugin") or within(imported, "plugboard")


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_a_package_imports_only_what_the_layout_allows(name):
    allowed = rule_for(name)
    wrong = sorted(i for i in GRAPH[name] if project(i) and not any(within(i, a) for a in allowed)
                   and not within(i, name))
    assert not wrong, f"{name} may import only {allowed}, not {wrong}"


@pytest.mark.parametrize("library", sorted(ONLY_IN))
def test_a_library_is_imported_only_where_the_layout_allows(library):
    owners = ONLY_IN[library]
    wrong = sorted(name for name, imported in GRAPH.items()
                   for i in imported if within(i, library)
                   and not any(within(name, o) for o in owners)
                   and not (library == "sqlalchemy" and any(within(i, t) for t in SQLALCHEMY_TYPES)))
    assert not wrong, f"{library} is for {owners} only; imported by {wrong}"


SHIPPED_HOOKS = sorted(p for p in (ROOT / "vdsm_plugin" / "hooks").glob("*/*")
                       if p.is_file() and p.read_text(errors="replace").startswith("#!/usr/bin/env python3"))
SHIPPED_HOOKS += sorted(p for p in (ROOT / "vdsm_plugin" / "hooks" / "examples").glob("*/*")
                        if p.is_file() and p.read_text(errors="replace").startswith("#!/usr/bin/env python3"))


@pytest.mark.parametrize("script", SHIPPED_HOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_hook_scripts_use_the_standard_library_and_lxml_only(script):
    """A hook script runs on its own, with the host's python3: nothing of the agent, no libvirt."""
    imported = imports_of(script.name, script, set())
    outside = {i.split(".")[0] for i in imported} - STDLIB - {"__future__", *HOOK_LIBS}
    assert not outside, outside


def test_the_rules_see_the_imports():
    """The graph is not empty and catches a known edge, so the rules above cannot pass vacuously."""
    assert "engine.devices.state" in GRAPH["engine.commands.common"]
    assert "libvirt" in GRAPH["vdsm_plugin.virt"]
    assert SHIPPED_HOOKS
