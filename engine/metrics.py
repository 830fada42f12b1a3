"""The engine's Prometheus metrics (prometheus-client), defined here and nowhere else.

    plugboard_device_operation_seconds{kind, operation, outcome}   histogram: live plugs and unplugs
        (engine.devices.live.run); its _count is the number of operations. kind: vm_devices.type;
        operation: plug | unplug; outcome: ok | pending (the guest has not released it yet) |
        failed (the host refused) | unreachable (never reached) | unknown (sent, no answer) | error
    plugboard_host_call_seconds{verb, outcome}   histogram: JSON-RPC calls to the agents
        (engine.jsonrpc_client); outcome: ok | failed (a coded error) | unreachable
    plugboard_monitor_event_lag_seconds{kind}   histogram: from an agent event's own time to the
        commit of the monitor's transaction that applied it
    plugboard_monitor_last_poll_timestamp_seconds{host}   gauge: when each host last answered the
        monitor's Host.getEvents (`time() - ...` is the seconds since)

Nothing is created at import: the metric objects are made by `create(registry)`, and `get()` makes
the process's set on prometheus-client's default registry at first use.

Under gunicorn with several workers, PROMETHEUS_MULTIPROC_DIR (set before the workers start, to an
empty directory) puts prometheus-client in multiprocess mode: each process writes its values to files
there and `render` sums them over every process; the launcher calls `process_exited(pid)` from
gunicorn's child_exit hook.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Up to a minute: an unplug waits for the guest (unplug_wait), a long-poll for its timeout.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, float("inf"))
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, float("inf"))


@dataclass(frozen=True)
class Metrics:
    device_operations: Histogram
    host_calls: Histogram
    event_lag: Histogram
    last_poll: Gauge


def create(registry: CollectorRegistry | None = REGISTRY) -> Metrics:
    """The engine's metric objects, registered in `registry` (None: in none, for tests)."""
    return Metrics(
        device_operations=Histogram(
            "plugboard_device_operation_seconds", "Live plugs and unplugs of VM devices, by outcome",
            ("kind", "operation", "outcome"), buckets=BUCKETS, registry=registry),
        host_calls=Histogram(
            "plugboard_host_call_seconds", "JSON-RPC calls to host agents, by verb and outcome",
            ("verb", "outcome"), buckets=BUCKETS, registry=registry),
        event_lag=Histogram(
            "plugboard_monitor_event_lag_seconds", "From an agent event's time to its application by the monitor",
            ("kind",), buckets=LAG_BUCKETS, registry=registry),
        # max over the processes: only the monitor's process sets it, and a timestamp only grows.
        last_poll=Gauge(
            "plugboard_monitor_last_poll_timestamp_seconds", "When the host last answered the monitor's poll",
            ("host",), registry=registry, multiprocess_mode="max"),
    )


_lock = threading.Lock()
_metrics: Metrics | None = None


def get() -> Metrics:
    """This process's metrics, on the default registry, made at first use."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = create()
    return _metrics


# ---- what the instrumented places call (one line each) --------------------------------------------

def device_operation(kind: str, plug: bool, outcome: str, seconds: float) -> None:
    get().device_operations.labels(kind, "plug" if plug else "unplug", outcome).observe(seconds)


def host_call(verb: str, outcome: str, seconds: float) -> None:
    get().host_calls.labels(verb, outcome).observe(seconds)


def events_applied(events: Iterable[dict[str, Any]], now: float | None = None) -> None:
    """Observe the lag of each applied event that carries its own time (schema: unix seconds). A
    host's clock ahead of the engine's would make it negative: counted as 0."""
    now = time.time() if now is None else now
    lag = get().event_lag
    for event in events:
        when = event.get("time")
        if isinstance(when, (int, float)) and not isinstance(when, bool):
            lag.labels(str(event.get("kind"))).observe(max(0.0, now - when))


def host_polled(host: str) -> None:
    get().last_poll.labels(host).set(time.time())


# ---- exposition -----------------------------------------------------------------------------------

def multiproc_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def render(directory: str | None = None) -> tuple[bytes, str]:
    """The text exposition and its content type: summed over every process's files when
    `directory` (default: $PROMETHEUS_MULTIPROC_DIR) is given, else this process's default registry."""
    directory = directory or multiproc_dir()
    if directory is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def process_exited(pid: int) -> None:
    """For gunicorn's child_exit hook: drop a dead worker's live gauges (multiprocess mode only)."""
    if (directory := multiproc_dir()) is not None:
        multiprocess.mark_process_dead(pid, directory)
