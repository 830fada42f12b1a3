"""PCI aliases and requests for them, as Nova writes both (seed 003). Pure: no database, no web.

An alias names the PCI devices a request may be met with: ``{"vendor_id": "8086", "product_id":
"10c9", "name": "a1"}``. Several aliases may share a name; the name then means any of them (Nova's
rule). Aliases come from the engine's configuration (`[pci] alias`, or $PLUGBOARD_PCI_ALIAS), each
in the seed's JSON form, and are checked when the engine starts.

A request is Nova's flavor extra spec ``pci_passthrough:alias`` (and the body of os-pci_attachments):
``"a1:2"`` or ``"a1:2,b1:1"`` -- alias names with a count of at least one, each name once.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

# \Z, not $: "$" also matches before a final newline, which would let "8086\n" in.
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
HEX4_RE = re.compile(r"^[0-9A-Fa-f]{4}\Z")
COUNT_RE = re.compile(r"^[0-9]{1,9}\Z")     # ASCII digits: str.isdigit() takes "²", which int() refuses
FIELDS = ("name", "vendor_id", "product_id")
MAX_COUNT: Final = 16

EXAMPLE = '{"vendor_id": "8086", "product_id": "10c9", "name": "a1"}'


@dataclass(frozen=True, order=True)
class Alias:
    name: str
    vendor_id: str      # 4 lower-case hex digits
    product_id: str


def parse_alias(entry: Any) -> Alias:
    """One alias from its JSON text or its object; ValueError naming what is wrong."""
    if isinstance(entry, str):
        try:
            entry = json.loads(entry)
        except ValueError:
            raise ValueError(f"{entry!r} is not JSON; an alias is like {EXAMPLE}") from None
    if not isinstance(entry, Mapping):
        raise ValueError(f"{entry!r} is not an object; an alias is like {EXAMPLE}")
    unknown = sorted(set(entry) - set(FIELDS))
    if unknown:
        raise ValueError(f"alias {entry.get('name')!r}: unknown field {', '.join(map(str, unknown))} "
                         f"(fields: {', '.join(FIELDS)})")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"alias name {name!r}: 1-64 letters, digits, '_', '.' or '-'")
    ids = []
    for key in ("vendor_id", "product_id"):
        value = entry.get(key)
        if not isinstance(value, str) or not HEX4_RE.match(value):
            raise ValueError(f"alias {name}: {key} {value!r} is not 4 hex digits (e.g. \"8086\")")
        ids.append(value.lower())
    return Alias(name, ids[0], ids[1])


def parse_aliases(value: Any) -> tuple[Alias, ...]:
    """The configuration's aliases: a list of aliases (JSON texts or objects), or the JSON text of one
    alias or of a list. The same alias twice is refused (it would say nothing new)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(f"{value!r} is not JSON; expected an alias like {EXAMPLE} or a list of them") from None
    entries = value if isinstance(value, list) else [value]
    aliases = tuple(parse_alias(e) for e in entries)
    seen: set[Alias] = set()
    for alias in aliases:
        if alias in seen:
            raise ValueError(f"alias {alias.name} ({alias.vendor_id}:{alias.product_id}) is given twice")
        seen.add(alias)
    return aliases


class AliasLike(Protocol):
    """An Alias, or a row of the table the engine keeps them in."""

    @property
    def name(self) -> str: ...
    @property
    def vendor_id(self) -> str: ...
    @property
    def product_id(self) -> str: ...


def by_name(aliases: Iterable[AliasLike]) -> dict[str, list[tuple[str, str]]]:
    """Alias name -> the (vendor_id, product_id) pairs it stands for."""
    out: dict[str, list[tuple[str, str]]] = {}
    for a in aliases:
        out.setdefault(a.name, []).append((a.vendor_id, a.product_id))
    return out


@dataclass(frozen=True)
class PciRequest:
    """`count` devices of alias `alias`."""

    alias: str
    count: int

    def describe(self) -> str:
        return f"{self.count} × {self.alias}"


def format_request(requests: Sequence[PciRequest]) -> str:
    return ",".join(f"{r.alias}:{r.count}" for r in requests)


def parse_request(text: Any, known: Iterable[str] | None = None) -> tuple[tuple[PciRequest, ...], list[str]]:
    """Nova's ``name:count[,name:count...]``: the requests and every problem, each as a sentence.
    `known`: the alias names configured (None: names are not checked)."""
    if not isinstance(text, str) or not text.strip():
        return (), [f"{text!r} is not a request like \"a1:2\" or \"a1:2,b1:1\""]
    problems: list[str] = []
    requests: list[PciRequest] = []
    names = set(known) if known is not None else None
    for part in text.split(","):
        name, sep, count = (p.strip() for p in part.partition(":"))
        if not sep:
            count = "1"     # Nova reads a bare name as one device
        if not NAME_RE.match(name):
            problems.append(f"{part.strip()!r} does not start with an alias name")
            continue
        if not COUNT_RE.match(count) or not 1 <= int(count) <= MAX_COUNT:
            problems.append(f"{part.strip()!r}: the count must be a whole number from 1 to {MAX_COUNT}")
            continue
        if any(r.alias == name for r in requests):
            problems.append(f"alias {name} is asked for twice")
            continue
        if names is not None and name not in names:
            problems.append(f"alias {name} is not configured (configured: {', '.join(sorted(names)) or 'none'})")
            continue
        requests.append(PciRequest(name, int(count)))
    total = sum(r.count for r in requests)
    if total > MAX_COUNT:
        problems.append(f"{total} devices in all; at most {MAX_COUNT}")
    return (tuple(requests) if not problems else ()), problems
