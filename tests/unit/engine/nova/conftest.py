"""Fixtures of the Nova facade's tests: the app and test client of the REST tests (FakeHosts behind
them), a registered host so servers can start, and readers of Nova's bodies and faults."""
from __future__ import annotations

from typing import Any

import pytest

from tests.unit.engine.api.conftest import app, client, fake_hosts, host1, registered_host  # noqa: F401

TENANT = "t1"
V21 = f"/v2.1/{TENANT}"


def nova_fault(response, name: str, status: int) -> str:
    """The message of a fault in Nova's shape, {name: {"code": status, "message": ...}}."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert list(body) == [name], body
    assert body[name]["code"] == status
    assert set(body[name]) == {"code", "message"}
    assert isinstance(body[name]["message"], str) and body[name]["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body[name]["message"]


@pytest.fixture
def nova_flavor(client):  # noqa: F811
    def make(name: str = "m1.usb", *, prefix: str = V21, specs: dict[str, Any] | None = None,
             **fields: Any) -> dict[str, Any]:
        body = {"flavor": {"name": name, "ram": 512, "vcpus": 1, "disk": 0, **fields}}
        r = client.post(f"{prefix}/flavors", json=body)
        assert r.status_code == 200, r.get_json()
        flavor = r.get_json()["flavor"]
        if specs:
            r = client.post(f"{prefix}/flavors/{flavor['id']}/os-extra_specs", json={"extra_specs": specs})
            assert r.status_code == 200, r.get_json()
        return flavor

    return make


@pytest.fixture
def nova_server(client, nova_flavor):  # noqa: F811
    def make(name: str = "s1", *, prefix: str = V21, flavor: dict[str, Any] | None = None,
             **fields: Any) -> dict[str, Any]:
        flavor = flavor or nova_flavor(f"flavor-of-{name}", prefix=prefix)
        r = client.post(f"{prefix}/servers", json={"server": {"name": name, "flavorRef": flavor["id"], **fields}})
        assert r.status_code == 202, r.get_json()
        return r.get_json()["server"]

    return make
