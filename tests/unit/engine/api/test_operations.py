"""/healthz, /readyz and /metrics (public, in the OpenAPI document), and the request id every answer
carries, which reaches the host calls and the log records of the request."""
from __future__ import annotations

import logging
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from prometheus_client.parser import text_string_to_metric_families

from engine import requestid
from engine.app import create_app
from engine.dao import db
from tests.unit.engine.fakehost import FakeHost, FakeHosts
from tests.unit.engine.api.test_nics import add_nic, nic_url  # noqa: F401 - add_nic is a fixture

PUBLIC_PATHS = ("/healthz", "/readyz", "/metrics")


class RecordingHost(FakeHost):
    """A FakeHost that notes the request id bound when each verb is called."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.request_ids: list[tuple[str, str | None]] = []

    def call(self, verb: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> dict[str, Any]:
        self.request_ids.append((verb, requestid.current()))
        return super().call(verb, params, timeout=timeout)


@pytest.fixture
def host1(fake_hosts: FakeHosts) -> FakeHost:
    return fake_hosts.add(RecordingHost("host1"))


def app_on(url: str):
    engine = db.make_engine(url)
    return create_app({"sessions": db.make_sessions(engine), "hosts": FakeHosts(), "TESTING": True}), engine


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'ready.db'}"


def head_and_previous() -> tuple[str, str]:
    script = ScriptDirectory.from_config(db.alembic_config())
    (head,) = script.get_heads()
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str)
    return head, previous


# ---- liveness and readiness ---------------------------------------------------------------------

def test_healthz_answers_without_the_database(tmp_path):
    app, engine = app_on(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")
    r = app.test_client().get("/healthz")
    assert r.status_code == 200 and r.get_json() == {"status": "ok"}
    engine.dispose()


def test_readyz_at_the_newest_revision(sqlite_url):
    db.upgrade(sqlite_url)
    app, engine = app_on(sqlite_url)
    r = app.test_client().get("/readyz")
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"status": "ready", "checks": {"database": "ok", "schema": "ok"}}
    engine.dispose()


def test_readyz_503_when_the_database_is_behind(sqlite_url):
    head, previous = head_and_previous()
    db.upgrade(sqlite_url, previous)
    app, engine = app_on(sqlite_url)
    r = app.test_client().get("/readyz")
    assert r.status_code == 503
    body = r.get_json()
    assert body["status"] == "not ready" and body["checks"]["database"] == "ok"
    assert body["checks"]["schema"].startswith(f"at {previous}; the newest is {head}"), body
    engine.dispose()


def test_readyz_503_when_the_database_was_never_migrated(anonymous):
    """The unit tier's database is made by create_all: no alembic revision at all."""
    r = anonymous.get("/readyz")
    assert r.status_code == 503
    assert r.get_json()["checks"]["schema"].startswith("no alembic revision")


def test_readyz_503_when_the_database_is_unreachable(tmp_path, caplog):
    app, engine = app_on(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")
    caplog.handler.addFilter(requestid.Filter())
    with caplog.at_level(logging.WARNING, logger="engine.api.operations"):
        r = app.test_client().get("/readyz", headers={"X-Request-Id": "probe-42"})
    assert r.status_code == 503
    assert r.get_json() == {"status": "not ready",
                            "checks": {"database": "unreachable (OperationalError)", "schema": "unknown"}}
    # the driver's detail is logged, under the request's id, and never answered
    (record,) = [rec for rec in caplog.records if rec.name == "engine.api.operations"]
    assert record.request_id == "probe-42" and "unable to open" in record.getMessage()
    assert "unable to open" not in r.get_data(as_text=True)
    engine.dispose()


def test_operations_are_public_and_documented_as_such(anonymous):
    for path in PUBLIC_PATHS:
        r = anonymous.get(path)
        assert r.status_code in (200, 503), (path, r.status_code)
        assert "WWW-Authenticate" not in r.headers
    paths = anonymous.get("/api/openapi.json").get_json()["paths"]
    public = sorted((method, path) for path, item in paths.items() for method, op in item.items()
                    if isinstance(op, dict) and op.get("security") == [])
    assert public == sorted(("get", path) for path in PUBLIC_PATHS)


# ---- metrics ------------------------------------------------------------------------------------

def samples(client, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    found = {}
    for family in text_string_to_metric_families(r.get_data(as_text=True)):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def count(client, name: str, **labels: str) -> float:
    key = tuple(sorted(labels.items()))
    return samples(client, name).get(key, 0.0)


def test_a_nic_activate_is_counted_and_timed(anonymous, client, running_vm, add_nic, host1):  # noqa: F811
    ops = "plugboard_device_operation_seconds_count"
    plug = {"kind": "interface", "operation": "plug"}
    ok_before = count(anonymous, ops, **plug, outcome="ok")
    failed_before = count(anonymous, ops, **plug, outcome="failed")
    calls_before = count(anonymous, "plugboard_host_call_seconds_count", verb="VM.hotplugNic", outcome="ok")

    nic = add_nic(running_vm, active=False)
    assert client.post(nic_url(running_vm, nic, "activate")).status_code == 200
    assert count(anonymous, ops, **plug, outcome="ok") == ok_before + 1

    client.post(nic_url(running_vm, nic, "deactivate"))
    host1.fail("VM.hotplugNic", "hotplugNic")
    assert client.post(nic_url(running_vm, nic, "activate")).status_code >= 400
    assert count(anonymous, ops, **plug, outcome="failed") == failed_before + 1
    assert count(anonymous, "plugboard_device_operation_seconds_sum", **plug, outcome="ok") > 0
    # FakeHost is not the JSON-RPC client: host calls are counted by engine.jsonrpc_client alone
    assert count(anonymous, "plugboard_host_call_seconds_count", verb="VM.hotplugNic", outcome="ok") == calls_before


# ---- request ids --------------------------------------------------------------------------------

def test_a_sane_request_id_is_kept(anonymous):
    r = anonymous.get("/healthz", headers={"X-Request-Id": "lb-7f3a.9:2"})
    assert r.headers["X-Request-Id"] == "lb-7f3a.9:2"
    assert requestid.current() is None      # unbound once the request is over


@pytest.mark.parametrize("bad", [None, "", "x" * 129, "a b", "ünï", "<script>", "a;b"])
def test_a_missing_or_bad_request_id_is_replaced(anonymous, bad):
    r = anonymous.get("/healthz", headers={} if bad is None else {"X-Request-Id": bad})
    answered = r.headers["X-Request-Id"]
    assert answered != bad and len(answered) == 32 and int(answered, 16) >= 0


def test_every_answer_has_its_own_id_even_a_fault(anonymous):
    first = anonymous.get("/api/vms")
    second = anonymous.get("/api/vms")
    assert first.status_code == second.status_code == 401
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]


def test_the_request_id_reaches_the_host_calls(client, running_vm, add_nic, host1):  # noqa: F811
    nic = add_nic(running_vm, active=False)
    host1.request_ids.clear()
    r = client.post(nic_url(running_vm, nic, "activate"), headers={"X-Request-Id": "req-activate-1"})
    assert r.status_code == 200 and r.headers["X-Request-Id"] == "req-activate-1"
    assert ("VM.hotplugNic", "req-activate-1") in host1.request_ids
    assert {rid for _, rid in host1.request_ids} == {"req-activate-1"}
