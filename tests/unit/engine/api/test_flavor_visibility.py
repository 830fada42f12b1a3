"""A private flavor (is_public false) is an administrator's: Plugboard has no per-project flavor
access, so to a member it does not exist -- not listed, 404 when asked for, and no VM is created
from it -- on the native API, on the Nova facade and in the web UI's VM form, as Nova answers a
flavor a project has no access to."""
from __future__ import annotations

import pytest

from tests.unit.engine.api.conftest import fault_of, reason_codes
from tests.unit.engine.nova.conftest import nova_fault
from tests.unit.engine.tokens import authenticated, issue_token

PROJECT = "acme"


@pytest.fixture
def member(app, sessions):
    return authenticated(app.test_client(), issue_token(sessions, "alice", "member", PROJECT))


@pytest.fixture
def flavors(client):
    made = {}
    for name, public in (("open", True), ("hidden", False)):
        r = client.post("/api/flavors", json={"name": name, "memory_mb": 128, "vcpus": 1, "is_public": public})
        assert r.status_code == 201, r.get_json()
        made[name] = r.get_json()
    return made


def test_a_member_neither_lists_nor_reads_a_private_flavor(client, member, flavors):
    assert sorted(f["name"] for f in client.get("/api/flavors").get_json()) == ["hidden", "open"]
    assert [f["name"] for f in member.get("/api/flavors").get_json()] == ["open"]
    assert member.get(f"/api/flavors/{flavors['open']['id']}").status_code == 200
    fault = fault_of(member.get(f"/api/flavors/{flavors['hidden']['id']}"))
    assert fault["status"] == 404 and reason_codes(fault) == ["FLAVOR_NOT_FOUND"]
    assert client.get(f"/api/flavors/{flavors['hidden']['id']}").get_json() == flavors["hidden"]


def test_a_member_creates_no_vm_from_a_private_flavor(client, member, flavors):
    body = {"name": "vm1", "project_id": PROJECT, "flavor_id": flavors["hidden"]["id"]}
    fault = fault_of(member.post("/api/vms", json=body))
    assert fault["status"] == 409 and "FLAVOR_NOT_FOUND" in reason_codes(fault)
    assert member.get("/api/vms").get_json() == []
    assert member.post("/api/vms", json={**body, "flavor_id": flavors["open"]["id"]}).status_code == 201
    assert client.post("/api/vms", json={**body, "name": "vm2"}).status_code == 201     # an admin may


def test_on_the_facade_a_private_flavor_is_not_found_for_a_member(client, member, flavors):
    base = f"/v2.1/{PROJECT}/flavors"
    for path in (base, f"{base}/detail"):
        assert [f["name"] for f in member.get(path).get_json()["flavors"]] == ["open"]
        assert [f["name"] for f in client.get(path).get_json()["flavors"]] == ["open"]     # Nova's is_public=true
        assert sorted(f["name"] for f in client.get(f"{path}?is_public=none").get_json()["flavors"]) == \
            ["hidden", "open"]
        assert [f["name"] for f in member.get(f"{path}?is_public=none").get_json()["flavors"]] == ["open"]
    hidden = flavors["hidden"]["id"]
    nova_fault(member.get(f"{base}/{hidden}"), "itemNotFound", 404)
    nova_fault(member.get(f"{base}/{hidden}/os-extra_specs"), "itemNotFound", 404)
    assert client.get(f"{base}/{hidden}").status_code == 200
