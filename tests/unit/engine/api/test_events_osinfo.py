"""/api/events and /api/osinfo."""
from __future__ import annotations

from tests.unit.engine.api.conftest import fault_of


def test_events_list_and_filters(client, new_vm):
    a, b = new_vm("a"), new_vm("b")
    client.post(f"/api/vms/{a['id']}/nics", json={"name": "n1", "network": "ovirtmgmt"})
    events = client.get("/api/events").get_json()
    assert events, "creating VMs and NICs is audited"
    ids = [e["id"] for e in events]
    assert ids == sorted(ids)
    for key in ("time", "severity", "code", "message", "vm_id", "host_code", "vars"):
        assert key in events[0]

    only_a = client.get(f"/api/events?vm_id={a['id']}").get_json()
    assert only_a and {e["vm_id"] for e in only_a} == {a["id"]}
    assert {e["vm_id"] for e in client.get(f"/api/events?vm_id={b['id']}").get_json()} == {b["id"]}

    after = client.get(f"/api/events?after={ids[0]}").get_json()
    assert [e["id"] for e in after] == ids[1:]
    assert len(client.get("/api/events?limit=1").get_json()) == 1


def test_events_bad_query_is_400(client):
    for query in ("limit=0", "limit=x", "after=-1", f"after={10**30}", "colour=red"):
        r = client.get(f"/api/events?{query}")
        assert r.status_code == 400, query
        reason = fault_of(r)["reasons"][0]
        assert reason["code"] == "INVALID_FIELD" and reason["vars"]["location"] == "query"


def test_osinfo_table(client):
    table = {o["id"]: o for o in client.get("/api/osinfo").get_json()}
    assert table["rhel_6"]["supports"]["nic_hotplug"] is True
    assert table["windows_7x64"]["supports"]["nic_hotplug"] is True
    assert table["windows_xp"]["supports"]["nic_hotplug"] is False
    assert table["rhel_6"]["name"] and table["rhel_6"]["family"] == "linux"
    assert table["rhel_6"]["min_cluster_version"]["nic_hotplug"] == "3.1"


def test_osinfo_get(client):
    r = client.get("/api/osinfo/rhel_9x64")
    assert r.status_code == 200
    assert r.get_json()["id"] == "rhel_9x64"
    fault = fault_of(client.get("/api/osinfo/beos"))
    assert fault["code"] == "NOT_FOUND"
