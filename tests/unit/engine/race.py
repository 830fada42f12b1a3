"""Racing the same operation from several threads, for the engine's concurrency tests."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def race(n: int, attempt: Callable[[int], Any]) -> list[Any]:
    """Run attempt(0..n-1) in n threads released together; each result or the exception it raised."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait(10)
            results[i] = attempt(i)
        except Exception as exc:  # collected and asserted on by the caller
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a racing thread never finished"
    return results
