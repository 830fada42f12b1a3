"""The engine's MAC address pool: NICs created without a MAC get the first free address of the
configured range(s), as oVirt's MAC pool does.

A MAC is "used" when any NIC of any VM has it, plugged or not. Allocation reads the NICs through the
caller's session (pending rows included, thanks to autoflush) under the database's "mac_pool" lock,
held until the caller's transaction ends, so two concurrent requests never get one address. The
NICs' unique MAC claim (vm_nics.claimed_mac) still guards the wire against explicit duplicates."""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from engine.dao import db, nics
from engine.errors import Conflict

DEFAULT_START = "56:6f:1a:00:00:00"
DEFAULT_END = "56:6f:1a:00:ff:ff"
MAX_RANGE_SIZE = 1 << 24      # a range beyond 16M addresses is a configuration mistake
_MAC = re.compile(r"^[0-9a-f]{2}([:-][0-9a-f]{2}){5}\Z")


def parse_mac(text: str) -> int:
    """'56:6F:1a:00:00:01' (or with dashes) -> 48-bit int; ValueError when malformed."""
    if not isinstance(text, str) or not _MAC.match(text.strip().lower()):
        raise ValueError(f"not a MAC address: {text!r} (expected six hex octets like 56:6f:1a:00:00:00)")
    return int(re.sub(r"[:-]", "", text.strip()), 16)


def format_mac(value: int) -> str:
    """48-bit int -> lower-case colon form, as stored in vm_nics.mac."""
    if not 0 <= value < 1 << 48:
        raise ValueError(f"MAC value out of range: {value}")
    raw = f"{value:012x}"
    return ":".join(raw[i:i + 2] for i in range(0, 12, 2))


def is_multicast(value: int) -> bool:
    return bool((value >> 40) & 1)


@dataclass(frozen=True)
class MacRange:
    first: int
    last: int

    def __post_init__(self) -> None:
        if self.first > self.last:
            raise ValueError(f"empty MAC range: {format_mac(self.first)} is after {format_mac(self.last)}")
        if is_multicast(self.first) or (self.first >> 40) != (self.last >> 40):
            # All addresses of a range share the first octet, so one unicast check covers them.
            raise ValueError(f"MAC range {self} must be unicast and keep the first octet "
                             "(the multicast bit of the first octet must be clear)")
        if self.size > MAX_RANGE_SIZE:
            raise ValueError(f"MAC range {self} is too large ({self.size} addresses, at most {MAX_RANGE_SIZE})")

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.first <= value <= self.last

    def __str__(self) -> str:
        return f"{format_mac(self.first)}-{format_mac(self.last)}"


def parse_ranges(text: str) -> list[MacRange]:
    """'a-b,c-d' (oVirt's MacPoolRanges syntax, MACs with colons) -> ranges; ValueError when malformed
    or when two ranges overlap."""
    ranges: list[MacRange] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        # Split on the one '-' that separates two colon-written MACs.
        m = re.fullmatch(r"([0-9A-Fa-f:]{17})\s*-\s*([0-9A-Fa-f:]{17})", part)
        if not m:
            raise ValueError(f"not a MAC range: {part!r} (expected START-END, e.g. "
                             f"{DEFAULT_START}-{DEFAULT_END})")
        ranges.append(MacRange(parse_mac(m.group(1)), parse_mac(m.group(2))))
    if not ranges:
        raise ValueError("no MAC range given")
    _check_disjoint(ranges)
    return ranges


def _check_disjoint(ranges: Iterable[MacRange]) -> None:
    ordered = sorted(ranges, key=lambda r: r.first)
    for a, b in zip(ordered, ordered[1:]):
        if b.first <= a.last:
            raise ValueError(f"MAC ranges {a} and {b} overlap")


class MacPool:
    """`MacPool(start, end)` for one range, `MacPool.from_ranges("a-b,c-d")` for several, or
    `MacPool.from_config(engine_config)` (its mac_pool_start / mac_pool_end)."""

    def __init__(self, start: str = DEFAULT_START, end: str = DEFAULT_END, *,
                 ranges: Iterable[MacRange] | None = None) -> None:
        if ranges is None:
            ranges = [MacRange(parse_mac(start), parse_mac(end))]
        self.ranges: tuple[MacRange, ...] = tuple(sorted(ranges, key=lambda r: r.first))
        if not self.ranges:
            raise ValueError("a MAC pool needs at least one range")
        _check_disjoint(self.ranges)

    @classmethod
    def from_ranges(cls, text: str) -> "MacPool":
        return cls(ranges=parse_ranges(text))

    @classmethod
    def from_config(cls, config: Any) -> "MacPool":
        return cls(getattr(config, "mac_pool_start", DEFAULT_START), getattr(config, "mac_pool_end", DEFAULT_END))

    @property
    def size(self) -> int:
        return sum(r.size for r in self.ranges)

    def __contains__(self, mac: object) -> bool:
        try:
            value = parse_mac(mac)  # type: ignore[arg-type]
        except ValueError:
            return False
        return any(value in r for r in self.ranges)

    def __repr__(self) -> str:
        return f"MacPool({', '.join(map(str, self.ranges))})"

    def addresses(self) -> Iterator[str]:
        for r in self.ranges:
            for value in range(r.first, r.last + 1):
                yield format_mac(value)

    def used(self, s: Session) -> set[int]:
        """The pool's addresses that some NIC has (any VM, plugged or not)."""
        used: set[int] = set()
        for r in self.ranges:
            for mac in nics.used_macs(s, format_mac(r.first), format_mac(r.last)):
                try:
                    used.add(parse_mac(mac))
                except ValueError:      # a malformed stored MAC is simply not one of ours
                    continue
        return used

    def allocate(self, s: Session, exclude: Iterable[str] = ()) -> str:
        """The first address of the pool that no NIC uses (and not in `exclude`, e.g. MACs chosen
        earlier in the same request). Raises Conflict(code MAC_POOL_EXHAUSTED) when none is left."""
        db.serialize(s, "mac_pool")
        taken = self.used(s) | {parse_mac(m) for m in exclude}
        for r in self.ranges:
            value = r.first
            while value <= r.last:
                if value not in taken:
                    return format_mac(value)
                value += 1
        raise Conflict(f"The MAC address pool {self} has no free address left ({self.size} in use)",
                       code="MAC_POOL_EXHAUSTED")
