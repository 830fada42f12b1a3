"""Fixtures of the REST tests: the app on the test database (the engine's `sessions` fixture) with
FakeHosts as its host-client factory, and a Flask test client that acts as the administrator (its
token rides on every request; `anonymous` sends none).

`running_vm` gives a VM that is up on FakeHost "host1" (started through the API, so the fake host has
its domain), for the hot-plug tests.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from engine.app import create_app
from tests.unit.engine.fakehost import FakeHost, FakeHosts
from tests.unit.engine.tokens import admin_client


@pytest.fixture
def fake_hosts() -> FakeHosts:
    return FakeHosts()


@pytest.fixture
def host1(fake_hosts: FakeHosts) -> FakeHost:
    return fake_hosts.add(FakeHost("host1"))


@pytest.fixture
def app(sessions, fake_hosts: FakeHosts) -> Flask:
    return create_app({"sessions": sessions, "hosts": fake_hosts, "TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return admin_client(app)


@pytest.fixture
def anonymous(app: Flask) -> FlaskClient:
    return app.test_client()


def fault_of(response) -> dict[str, Any]:
    """The fault of an error response, after checking the envelope every error answer has."""
    assert response.mimetype == "application/json", response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"fault"}, body
    fault = body["fault"]
    assert fault["status"] == response.status_code
    assert isinstance(fault["code"], str) and fault["code"]
    assert isinstance(fault["message"], str) and fault["message"]
    assert isinstance(fault["reasons"], list)
    assert "Traceback" not in response.get_data(as_text=True)
    return fault


def reason_codes(fault: dict[str, Any]) -> list[str]:
    return [r["code"] for r in fault["reasons"]]


@pytest.fixture
def registered_host(client: FlaskClient, host1: FakeHost) -> dict[str, Any]:
    """host1, registered through the API (add_host asks the fake agent for its capabilities)."""
    r = client.post("/api/hosts", json={"name": "host1", "url": "http://127.0.0.1:54321/jsonrpc"})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


@pytest.fixture
def new_vm(client: FlaskClient) -> Callable[..., dict[str, Any]]:
    def make(name: str = "vm1", **fields: Any) -> dict[str, Any]:
        r = client.post("/api/vms", json={"name": name, "os_type": "rhel_9x64", **fields})
        assert r.status_code == 201, r.get_json()
        return r.get_json()

    return make


@pytest.fixture
def running_vm(client: FlaskClient, registered_host: dict[str, Any], new_vm) -> dict[str, Any]:
    vm = new_vm("running")
    r = client.post(f"/api/vms/{vm['id']}/start", json={"host_id": registered_host["id"]})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["status"] == "up"
    return r.get_json()
