"""/api/clusters and /api/hosts."""
from __future__ import annotations

from engine.dao import hosts as hosts_dao
from tests.unit.engine.api.conftest import fault_of, reason_codes


def test_create_list_get_cluster(client):
    r = client.post("/api/clusters", json={"name": "legacy", "compat_version": "3.0", "description": "old"})
    assert r.status_code == 201
    cluster = r.get_json()
    assert cluster["name"] == "legacy" and cluster["compat_version"] == "3.0"
    assert r.headers["Location"].endswith(f"/api/clusters/{cluster['id']}")

    assert client.get(r.headers["Location"]).get_json() == cluster
    listed = client.get("/api/clusters").get_json()
    assert cluster in listed


def test_cluster_defaults(client):
    cluster = client.post("/api/clusters", json={"name": "c1"}).get_json()
    assert cluster["compat_version"] == "4.7"
    assert cluster["description"] == ""


def test_unknown_cluster_is_404(client):
    fault = fault_of(client.get("/api/clusters/no-such-cluster"))
    assert fault["code"] == "NOT_FOUND"
    assert reason_codes(fault) == ["CLUSTER_NOT_FOUND"]


def test_cluster_bad_version_is_400(client):
    r = client.post("/api/clusters", json={"name": "c1", "compat_version": "four"})
    assert r.status_code == 400
    fault = fault_of(r)
    assert fault["reasons"][0]["vars"]["field"] == "compat_version"


def test_duplicate_cluster_name_is_refused(client):
    assert client.post("/api/clusters", json={"name": "c1"}).status_code == 201
    r = client.post("/api/clusters", json={"name": "c1"})
    assert r.status_code == 409
    assert "NAME_IN_USE" in reason_codes(fault_of(r))


def test_register_host_stores_capabilities(client, host1):
    r = client.post("/api/hosts", json={"name": "host1", "url": "http://127.0.0.1:54321/jsonrpc"})
    assert r.status_code == 201, r.get_json()
    host = r.get_json()
    assert host["status"] == "up"
    assert host["capabilities"]["bridges"] == ["ovirtmgmt", "br0"]
    assert r.headers["Location"].endswith(f"/api/hosts/{host['id']}")
    assert "Host.getCapabilities" in host1.verbs()

    assert client.get(f"/api/hosts/{host['id']}").get_json() == host
    assert [h["id"] for h in client.get("/api/hosts").get_json()] == [host["id"]]


def test_register_unreachable_host_is_503_and_stores_nothing(client, host1, sessions):
    host1.unreachable = True
    r = client.post("/api/hosts", json={"name": "host1", "url": "http://127.0.0.1:54321/jsonrpc"})
    assert r.status_code == 503
    fault = fault_of(r)
    assert fault["code"] == "HOST_UNREACHABLE"
    assert fault["host"]["name"] == "host1"
    with sessions() as s:
        assert list(hosts_dao.list(s)) == []
    assert client.get("/api/hosts").get_json() == []


def test_register_host_bad_url_is_400(client):
    r = client.post("/api/hosts", json={"name": "h", "url": "not a url"})
    assert r.status_code == 400
    assert fault_of(r)["reasons"][0]["vars"]["field"] == "url"


def test_refresh_host(client, registered_host, host1):
    host1.capabilities["bridges"] = ["ovirtmgmt", "br0", "br1"]
    r = client.post(f"/api/hosts/{registered_host['id']}/refresh")
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["capabilities"]["bridges"] == ["ovirtmgmt", "br0", "br1"]


def test_refresh_unreachable_host_is_503(client, registered_host, host1):
    host1.unreachable = True
    r = client.post(f"/api/hosts/{registered_host['id']}/refresh")
    assert r.status_code == 503
    assert fault_of(r)["code"] == "HOST_UNREACHABLE"


def test_unknown_host_is_404(client):
    assert fault_of(client.get("/api/hosts/nope"))["code"] == "NOT_FOUND"
    assert client.post("/api/hosts/nope/refresh").status_code == 404
