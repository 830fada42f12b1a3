"""The attack suite of authentication, tenancy and roles, on both fronts. Routes are not listed by
hand: the native API's come from its OpenAPI document, the facade's from the app's URL map, so a
route added later is attacked too."""
from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from engine import nova
from engine.dao import audit
from tests.unit.engine.api.conftest import fault_of, reason_codes
from tests.unit.engine.tokens import authenticated, issue_token

PARAM = re.compile(r"\{(\w+)\}|<(?:\w+:)?(\w+)>")
NOVA_PUBLIC = ("/", "/v2", "/v2/", "/v2.1", "/v2.1/")


def native_routes(anonymous) -> list[tuple[str, str]]:
    r = anonymous.get("/api/openapi.json")
    assert r.status_code == 200, "the OpenAPI document is public"
    # An operation the document declares public (`security: []`: /healthz, /readyz, /metrics) needs none.
    return sorted((method.upper(), path) for path, item in r.get_json()["paths"].items()
                  for method in item if method in ("get", "post", "put", "patch", "delete")
                  and item[method].get("security") != [])


def nova_routes(app) -> list[tuple[str, str]]:
    return sorted((method, rule.rule) for rule in app.url_map.iter_rules()
                  if rule.endpoint.startswith(f"{nova.NAME}.") and rule.endpoint not in nova.PUBLIC_ENDPOINTS
                  for method in rule.methods - {"HEAD", "OPTIONS"})


def fill(path: str, ids: dict[str, str]) -> str:
    return PARAM.sub(lambda m: ids.get(m.group(1) or m.group(2), "x1"), path)


def call(client, method: str, path: str, **kw: Any):
    return client.open(path, method=method, json={} if method in ("POST", "PUT", "PATCH") else None, **kw)


def nova_front(path: str) -> bool:
    return not path.startswith("/api/")


def assert_unauthorized(response, path: str) -> None:
    assert response.status_code == 401, (path, response.get_data(as_text=True))
    assert response.headers["WWW-Authenticate"]
    if nova_front(path):
        body = response.get_json()
        assert list(body) == ["unauthorized"] and body["unauthorized"]["code"] == 401, body
    else:
        assert fault_of(response)["code"] == "UNAUTHORIZED"


# ---- anonymous and bad credentials -------------------------------------------------------------

def test_public_documents_need_no_credential(anonymous):
    assert anonymous.get("/api/openapi.json").status_code == 200
    for path in NOVA_PUBLIC:
        assert anonymous.get(path).status_code == 200, path


def test_every_route_without_a_credential_is_401(app, anonymous):
    routes = native_routes(anonymous) + nova_routes(app)
    assert len(routes) > 60
    for method, path in routes:
        url = fill(path, {"tenant_id": "default", "rest": "whatever"})
        r = call(anonymous, method, url)
        assert_unauthorized(r, url)
        if not nova_front(url):
            assert reason_codes(fault_of(r)) == ["CREDENTIAL_MISSING"]


def test_the_other_fronts_header_is_no_credential(anonymous, sessions):
    token = issue_token(sessions)
    assert_unauthorized(anonymous.get("/api/vms", headers={"X-Auth-Token": token}), "/api/vms")
    assert_unauthorized(anonymous.get("/v2.1/default/servers", headers={"Authorization": f"Bearer {token}"}),
                        "/v2.1/default/servers")


def _bad_tokens(sessions) -> dict[str, str]:
    live = issue_token(sessions, "carol", "admin", "default")
    expired = issue_token(sessions, "dave", "admin", "default", expires_in=timedelta(seconds=-1))
    revoked = issue_token(sessions, "erin", "admin", "default")
    with sessions.begin() as s:
        s.execute(text("UPDATE tokens SET revoked_at = created_at WHERE id = :id"), {"id": revoked.split(".")[1]})
    prefix, token_id, secret = live.split(".")
    return {"expired": expired, "revoked": revoked, "malformed": "not a token", "empty": "",
            "wrong secret": f"{prefix}.{token_id}.{'A' * len(secret)}", "unknown id": f"{prefix}.{'0' * 12}.{secret}",
            "padded": live + "x", "control characters": live[:-1] + "\x07"}


@pytest.mark.parametrize("path", ["/api/vms", "/api/hosts", "/v2.1/default/servers", "/v3/flavors"])
def test_expired_revoked_and_malformed_tokens_are_401(anonymous, sessions, path):
    for what, token in _bad_tokens(sessions).items():
        headers = {"X-Auth-Token": token} if nova_front(path) else {"Authorization": f"Bearer {token}"}
        r = anonymous.get(path, headers=headers)
        assert_unauthorized(r, f"{path} with a {what} token")
        if not nova_front(path):
            assert reason_codes(fault_of(r)) in (["CREDENTIAL_INVALID"],), what


@pytest.mark.parametrize("header", ["Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer  ", "bearer pb.x.y", "Token abc"])
def test_other_authorization_schemes_are_401(anonymous, header):
    assert_unauthorized(anonymous.get("/api/vms", headers={"Authorization": header}), "/api/vms")


def test_tokens_are_stored_only_as_digests(sessions):
    token = issue_token(sessions)
    with sessions() as s:
        rows = [tuple(row) for table in ("tokens", "users", "audit_events")
                for row in s.execute(text(f"SELECT * FROM {table}"))]    # noqa: S608 (fixed names)
    dumped = repr(rows)
    assert token not in dumped and token.split(".")[2] not in dumped
    assert hashlib.sha256(token.encode()).hexdigest() in dumped


# ---- members: another project's VM is 404, admin routes are 403 ---------------------------------

@pytest.fixture
def others_vm(client, registered_host) -> dict[str, str]:
    """A VM of project "other" with a NIC, a USB controller and a redirection device, by the admin."""
    vm = client.post("/api/vms", json={"name": "theirs", "project_id": "other", "graphics": "spice"}).get_json()
    ids = {"vm_id": vm["id"], "server_id": vm["id"]}
    ids["nic_id"] = client.post(f"/api/vms/{vm['id']}/nics", json={"name": "eth0", "network": "ovirtmgmt"}
                                ).get_json()["id"]
    ids["controller_id"] = _first_controller(client, vm["id"])
    ids["redirdev_id"] = client.post(f"/api/vms/{vm['id']}/redirdevs", json={"type": "spicevmc"}).get_json()["id"]
    return ids


def _first_controller(client, vm_id: str) -> str:
    r = client.post(f"/api/vms/{vm_id}/controllers", json={"model": "ehci"})
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    return (body[0] if isinstance(body, list) else body)["id"]


@pytest.fixture
def member(app, sessions):
    """A member of project "mine", its client carrying its token."""
    return authenticated(app.test_client(), issue_token(sessions, "mallory", "member", "mine"))


# Well-formed bodies, so that what answers is the loader, not the syntax check (a malformed body is a
# 400 whether the VM exists or not, which tells nothing either).
BODIES = {("POST", "nics"): {"name": "eth9", "network": "ovirtmgmt"}, ("POST", "controllers"): {"model": "ehci"},
          ("POST", "redirdevs"): {"type": "spicevmc"}, ("PUT", "{nic_id}"): {"linked": False},
          ("PATCH", "{nic_id}"): {"linked": False}, ("POST", "action"): {"os-start": None},
          ("POST", "pci_attachments"): {"alias": "a1"},
          ("POST", "os-pci_attachments"): {"pciAttachment": {"pci_passthrough:alias": "a1:1"}}}


def test_a_member_gets_404_on_every_route_of_another_projects_vm(app, anonymous, member, others_vm, client):
    admin_only = set(_admin_only(app, anonymous))
    vm_routes = [(m, p) for m, p in native_routes(anonymous) if "{vm_id}" in p]
    vm_routes += [(m, p) for m, p in nova_routes(app) if "<string:server_id>" in p]
    assert len(vm_routes) > 20
    for method, path in vm_routes:
        body = BODIES.get((method, path.rpartition("/")[2]), {} if method in ("POST", "PUT", "PATCH") else None)
        r = member.open(fill(path, {**others_vm, "tenant_id": "mine"}), method=method, json=body)
        if (method, path) in admin_only:
            # an admin's route under a VM (raw host devices): 403 whichever VM, so it tells nothing either
            nowhere = member.open(fill(path, {"vm_id": "no-such-vm", "tenant_id": "mine"}), method=method, json=body)
            assert r.status_code == nowhere.status_code == 403, (method, path, r.get_json())
            continue
        assert r.status_code == 404, (method, path, r.get_json())
    # and nothing changed: the admin still sees the VM and its three devices
    assert client.get(f"/api/vms/{others_vm['vm_id']}").status_code == 200
    assert client.get(f"/api/vms/{others_vm['vm_id']}/nics/{others_vm['nic_id']}").status_code == 200


def _admin_only(app, anonymous) -> list[tuple[str, str]]:
    from engine import api
    routes = []
    for method, path in native_routes(anonymous):
        blueprint = _native_endpoint(app, method, path).partition(".")[0]
        if blueprint not in api.MEMBER_BLUEPRINTS and not (blueprint in api.MEMBER_READS and method == "GET"):
            routes.append((method, path))
    routes += [(m, p) for m, p in nova_routes(app) if _nova_endpoint(app, m, p) not in nova.MEMBER_ENDPOINTS]
    return routes


def _native_endpoint(app, method: str, path: str) -> str:
    """The endpoint of an OpenAPI path ("/api/vms/{vm_id}/nics" is the rule "/api/vms/<string:vm_id>/nics")."""
    adapter = app.url_map.bind("localhost")
    endpoint, _ = adapter.match(fill(path, {}), method=method)
    return endpoint


def _nova_endpoint(app, method: str, path: str) -> str:
    for rule in app.url_map.iter_rules():
        if rule.rule == path and method in rule.methods:
            return rule.endpoint.rpartition(".")[2]
    raise AssertionError(path)


def test_a_member_gets_403_on_admin_routes_and_an_admin_gets_through(app, anonymous, member, client, sessions):
    routes = _admin_only(app, anonymous)
    paths = {p for _, p in routes}
    assert {"/api/hosts", "/api/clusters", "/api/flavors", "/v2.1/<tenant_id>/flavors"} <= paths
    for method, path in routes:
        url = fill(path, {"tenant_id": "mine"})
        r = call(member, method, url)
        assert r.status_code == 403, (method, url, r.get_json())
        if nova_front(url):
            assert list(r.get_json()) == ["forbidden"]
        else:
            assert reason_codes(fault_of(r)) == ["ADMIN_REQUIRED"]
        r = call(client, method, url)
        assert r.status_code not in (401, 403), (method, url, r.get_json())


def test_a_member_reads_flavors_and_the_os_table(member):
    assert member.get("/api/flavors").status_code == 200
    assert member.get("/api/osinfo").status_code == 200
    assert member.get("/v2.1/mine/flavors/detail").status_code == 200


def test_the_facades_tenant_must_be_one_of_the_tokens_projects(member):
    r = member.get("/v2.1/other/servers")
    assert r.status_code == 403 and list(r.get_json()) == ["forbidden"]
    assert member.get("/v2.1/mine/servers").status_code == 200


def test_a_member_sees_and_makes_only_its_projects_vms(member, client, others_vm, sessions):
    r = member.post("/api/vms", json={"name": "mine1"})         # its only project by default
    assert r.status_code == 201 and r.get_json()["project_id"] == "mine"
    r = member.post("/api/vms", json={"name": "sneaky", "project_id": "other"})
    assert r.status_code == 403 and reason_codes(fault_of(r)) == ["PROJECT_NOT_ALLOWED"]
    assert [v["name"] for v in member.get("/api/vms").get_json()] == ["mine1"]
    assert {v["name"] for v in client.get("/api/vms").get_json()} == {"mine1", "theirs"}
    assert [s["name"] for s in member.get("/v3/servers").get_json()["servers"]] == ["mine1"]

    events = member.get("/api/events").get_json()
    assert events and {e["vm_id"] for e in events} == {_id(member, "mine1")}
    assert {e["actor"] for e in events} == {"mallory"}
    assert member.get(f"/api/events?vm_id={others_vm['vm_id']}").get_json() == []
    with sessions() as s:
        assert {e.actor for e in audit.list(s, vm_id=others_vm["vm_id"])} == {"admin"}


def _id(client, name: str) -> str:
    return next(v["id"] for v in client.get("/api/vms").get_json() if v["name"] == name)


def test_a_member_acts_on_its_own_vm(member, registered_host):
    vm = member.post("/api/vms", json={"name": "own"}).get_json()
    nic = member.post(f"/api/vms/{vm['id']}/nics", json={"name": "eth0", "network": "ovirtmgmt"})
    assert nic.status_code == 201, nic.get_json()
    r = member.post(f"/api/vms/{vm['id']}/start", json={"host_id": registered_host["id"]})
    assert r.status_code == 200, r.get_json()
    assert member.post(f"/api/vms/{vm['id']}/nics/{nic.get_json()['id']}/deactivate").status_code in (200, 202)
