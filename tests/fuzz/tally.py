"""Counting what a fuzzer sent and what came back, for the totals each fuzz test asserts and prints."""
from __future__ import annotations

import collections
from dataclasses import dataclass, field


@dataclass
class Tally:
    requests: int = 0
    statuses: collections.Counter[int | str] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    by_operation: collections.Counter[tuple[str, int | str]] = field(default_factory=collections.Counter)

    def count(self, status: int | str, operation: str = "") -> None:
        self.requests += 1
        self.statuses[status] += 1
        self.by_operation[operation, status] += 1

    def breakdown(self) -> str:
        ops: dict[str, list[str]] = {}
        for (op, status), n in sorted(self.by_operation.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            ops.setdefault(op, []).append(f"{status}: {n}")
        return "\n".join(f"  {op}  {', '.join(counts)}" for op, counts in ops.items())

    def histogram(self) -> str:
        return ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items(), key=lambda kv: str(kv[0])))


def report(request, line: str) -> None:
    """Write a line to the terminal even when pytest captures output (the fuzzers' figures)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
    else:
        print(line)
