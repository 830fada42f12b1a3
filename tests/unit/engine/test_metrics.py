"""engine.metrics: the metrics' values, and prometheus-client's multiprocess mode as gunicorn's workers
use it (each worker a process writing into PROMETHEUS_MULTIPROC_DIR, /metrics summing them)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from engine import metrics
from engine.app import create_app
from tests.unit.engine.fakehost import FakeHosts

ROOT = Path(__file__).resolve().parents[3]

# What one gunicorn worker does in these tests: it counts through engine.metrics like the engine does.
WORKER = """
import time
from engine import metrics
metrics.device_operation("testkind", True, "ok", 0.25)
metrics.host_call("VM.hotplugNic", "failed", 0.5)
metrics.events_applied([{"kind": "device_removed", "time": time.time() - 3.0, "seq": 1}])
metrics.host_polled("host1")
"""


def run_workers(directory: Path, n: int = 2) -> None:
    env = {**os.environ, metrics.MULTIPROC_ENV: str(directory), "PYTHONPATH": str(ROOT)}
    for _ in range(n):
        subprocess.run([sys.executable, "-c", WORKER], env=env, check=True, cwd=ROOT, timeout=60)


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_multiprocess_mode_sums_every_workers_values(tmp_path):
    before = time.time()
    run_workers(tmp_path)
    body, content_type = metrics.render(str(tmp_path))
    assert content_type.startswith("text/plain")
    found = parse(body.decode())
    op = (("kind", "testkind"), ("operation", "plug"), ("outcome", "ok"))
    assert found[("plugboard_device_operation_seconds_count", op)] == 2
    assert found[("plugboard_device_operation_seconds_sum", op)] == 0.5
    call = (("outcome", "failed"), ("verb", "VM.hotplugNic"))
    assert found[("plugboard_host_call_seconds_count", call)] == 2
    lag = (("kind", "device_removed"),)
    assert found[("plugboard_monitor_event_lag_seconds_count", lag)] == 2
    assert found[("plugboard_monitor_event_lag_seconds_bucket", (*lag, ("le", "2.5")))] == 0
    assert found[("plugboard_monitor_event_lag_seconds_bucket", (*lag, ("le", "5.0")))] == 2
    # the gauge is the newest over the processes (max), one series without a pid label
    polled = [(k, v) for k, v in found.items() if k[0] == "plugboard_monitor_last_poll_timestamp_seconds"]
    assert len(polled) == 1 and polled[0][0][1] == (("host", "host1"),)
    assert before <= polled[0][1] <= time.time()
    # only the workers' files: nothing of this process's default registry
    assert not any(name.startswith("python_gc") for name, _ in found)


def test_the_metrics_route_collects_from_the_directory_when_it_is_set(tmp_path, monkeypatch, sessions):
    directory = tmp_path / "prometheus"      # of its own: the test's database file sits in tmp_path
    directory.mkdir()
    run_workers(directory, n=1)
    app = create_app({"sessions": sessions, "hosts": FakeHosts(), "TESTING": True})
    client = app.test_client()
    op = ("plugboard_device_operation_seconds_count",
          (("kind", "testkind"), ("operation", "plug"), ("outcome", "ok")))
    assert op not in parse(client.get("/metrics").get_data(as_text=True))   # default registry
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(directory))
    assert parse(client.get("/metrics").get_data(as_text=True))[op] == 1


def test_process_exited_drops_a_dead_workers_live_gauges_only(tmp_path, monkeypatch):
    live = tmp_path / "gauge_livesum_4242.db"
    counts = tmp_path / "histogram_4242.db"
    live.write_bytes(b"")
    counts.write_bytes(b"")
    metrics.process_exited(4242)            # not in multiprocess mode: nothing to do
    assert live.exists()
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    metrics.process_exited(4242)
    assert not live.exists() and counts.exists()     # counts of a dead worker still count


def test_event_lag_is_measured_from_the_events_own_time(monkeypatch):
    registry = CollectorRegistry()
    monkeypatch.setattr(metrics, "_metrics", metrics.create(registry))
    metrics.events_applied([{"kind": "vm_lifecycle", "time": 100.0}, {"kind": "vm_lifecycle", "time": 107.5},
                            {"kind": "device_removed", "time": 120.0},      # the host's clock is ahead
                            {"kind": "hostdev_added"}], now=110.0)          # no time: not observed
    assert registry.get_sample_value("plugboard_monitor_event_lag_seconds_count", {"kind": "vm_lifecycle"}) == 2
    assert registry.get_sample_value("plugboard_monitor_event_lag_seconds_sum", {"kind": "vm_lifecycle"}) == 12.5
    assert registry.get_sample_value("plugboard_monitor_event_lag_seconds_sum", {"kind": "device_removed"}) == 0
    assert registry.get_sample_value("plugboard_monitor_event_lag_seconds_count", {"kind": "hostdev_added"}) is None


def test_nothing_is_registered_until_first_use():
    """create() registers in the registry it is given, and only there."""
    registry = CollectorRegistry()
    metrics.create(registry)
    names = {s.name for family in registry.collect() for s in family.samples}
    assert names == set()      # labelled metrics have no series until a label set is used
    assert {m.name for m in registry.collect()} == {
        "plugboard_device_operation_seconds", "plugboard_host_call_seconds",
        "plugboard_monitor_event_lag_seconds", "plugboard_monitor_last_poll_timestamp_seconds"}
