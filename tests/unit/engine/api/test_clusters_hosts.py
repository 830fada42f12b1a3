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


def _agent_ids(sessions) -> dict[str, str | None]:
    with sessions() as s:
        return {h.name: h.agent_id for h in hosts_dao.list(s)}


def test_one_agent_is_not_registered_as_a_second_host_under_another_name_or_url(client, registered_host, host1,
                                                                               fake_hosts, sessions):
    fake_hosts.by_name["host1-again"] = host1        # another name and URL that reach the same agent
    before = client.get("/api/hosts").get_json()
    fault = fault_of(client.post("/api/hosts", json={"name": "host1-again", "url": "https://10.0.0.9:54321/jsonrpc"}))
    assert fault["status"] == 409 and reason_codes(fault) == ["AGENT_REGISTERED"]
    assert fault["reasons"][0]["vars"] == {"url": "https://10.0.0.9:54321/jsonrpc",
                                           "agent_id": host1.capabilities["hostId"], "host": "host1"}
    assert client.get("/api/hosts").get_json() == before
    assert _agent_ids(sessions) == {"host1": host1.capabilities["hostId"]}
    refused = client.get("/api/events?code=HOST_ADD_REFUSED").get_json()
    assert [e["vars"]["reasons"][0]["code"] for e in refused] == ["AGENT_REGISTERED"]


def test_a_refresh_that_reaches_another_hosts_agent_is_refused_and_changes_nothing(client, fake_hosts, sessions):
    one, two = fake_hosts["host1"], fake_hosts["host2"]
    for name in ("host1", "host2"):
        assert client.post("/api/hosts", json={"name": name, "url": f"http://{name}:54321/jsonrpc"}).status_code == 201
    host2 = [h for h in client.get("/api/hosts").get_json() if h["name"] == "host2"][0]
    fake_hosts.by_name["host2"] = one                # host2's URL now reaches host1's agent
    fault = fault_of(client.post(f"/api/hosts/{host2['id']}/refresh"))
    assert fault["status"] == 409 and reason_codes(fault) == ["AGENT_REGISTERED"]
    assert _agent_ids(sessions) == {"host1": one.capabilities["hostId"], "host2": two.capabilities["hostId"]}
    assert client.get(f"/api/hosts/{host2['id']}").get_json()["capabilities"] == host2["capabilities"]


def test_a_host_registered_before_agents_had_an_identity_gets_its_own_at_refresh(client, registered_host, host1,
                                                                                sessions):
    with sessions.begin() as s:
        hosts_dao.get(s, registered_host["id"]).agent_id = None
    assert client.post(f"/api/hosts/{registered_host['id']}/refresh").status_code == 200
    assert _agent_ids(sessions) == {"host1": host1.capabilities["hostId"]}


def test_maintenance_activate_and_remove_a_host(client, registered_host, host1):
    host_id = registered_host["id"]
    r = client.post(f"/api/hosts/{host_id}/maintenance")
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["status"] == "maintenance"
    fault = fault_of(client.post(f"/api/hosts/{host_id}/maintenance"))
    assert fault["status"] == 409 and reason_codes(fault) == ["HOST_IN_MAINTENANCE"]

    r = client.post(f"/api/hosts/{host_id}/activate")
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["status"] == "up"
    fault = fault_of(client.delete(f"/api/hosts/{host_id}"))
    assert fault["status"] == 409 and reason_codes(fault) == ["HOST_NOT_IN_MAINTENANCE"]

    assert client.post(f"/api/hosts/{host_id}/maintenance").status_code == 200
    r = client.delete(f"/api/hosts/{host_id}")
    assert r.status_code == 204 and r.data == b""
    assert client.get(f"/api/hosts/{host_id}").status_code == 404
    assert client.get("/api/hosts").get_json() == []
    assert [e["code"] for e in client.get("/api/events?code=HOST_REMOVED").get_json()] == ["HOST_REMOVED"]


def test_a_host_with_a_running_vm_is_not_put_in_maintenance(client, running_vm):
    fault = fault_of(client.post(f"/api/hosts/{running_vm['run_on_host']}/maintenance"))
    assert fault["status"] == 409 and reason_codes(fault) == ["HOST_RUNS_VMS"]
    assert fault["reasons"][0]["vars"]["vms"] == ["running"]
    assert client.get(f"/api/hosts/{running_vm['run_on_host']}").get_json()["status"] == "up"


def test_maintenance_activate_and_remove_of_an_unknown_host_are_404(client):
    for r in (client.post("/api/hosts/nope/maintenance"), client.post("/api/hosts/nope/activate"),
              client.delete("/api/hosts/nope")):
        fault = fault_of(r)
        assert fault["status"] == 404 and reason_codes(fault) == ["HOST_NOT_FOUND"]


def test_fence_takes_an_explicit_manual_confirmation(client, registered_host, sessions):
    host_id = registered_host["id"]
    for body in (None, {}, {"fence_type": "restart"}, {"fence_type": "manual", "force": True}):
        r = client.post(f"/api/hosts/{host_id}/fence", json=body)
        assert r.status_code == 400, (body, r.get_json())
    fault = fault_of(client.post(f"/api/hosts/{host_id}/fence", json={"fence_type": "manual"}))
    assert fault["status"] == 409 and reason_codes(fault) == ["HOST_NOT_UNREACHABLE"]
    with sessions.begin() as s:
        hosts_dao.set_status(s, host_id, "unreachable")
    r = client.post(f"/api/hosts/{host_id}/fence", json={"fence_type": "manual"})
    assert r.status_code == 200 and r.get_json()["status"] == "unreachable"
