"""/api/vms: create, list, get, delete, start, stop."""
from __future__ import annotations

import pytest

from engine.dao import vms as vms_dao
from tests.unit.engine.api.conftest import fault_of, reason_codes
from tests.unit.engine.tokens import authenticated, issue_token


def test_create_get_list_vm(client):
    r = client.post("/api/vms", json={"name": "web", "os_type": "rhel_6x64", "memory_mb": 512, "vcpus": 2,
                                      "machine": "q35", "project_id": "p1",
                                      "custom_properties": {"mtu": "9000"}})
    assert r.status_code == 201, r.get_json()
    vm = r.get_json()
    assert vm["status"] == "down" and vm["memory_mb"] == 512 and vm["machine"] == "q35"
    assert vm["custom_properties"] == {"mtu": "9000"}
    assert r.headers["Location"].endswith(f"/api/vms/{vm['id']}")
    assert client.get(f"/api/vms/{vm['id']}").get_json() == vm
    assert [v["id"] for v in client.get("/api/vms").get_json()] == [vm["id"]]


def test_a_vm_records_who_created_it(app, sessions, client):
    member = authenticated(app.test_client(), issue_token(sessions, "carol", "member", project="mine"))
    r = member.post("/api/vms", json={"name": "carols", "os_type": "debian_12", "memory_mb": 64, "vcpus": 1})
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["created_by"] == "carol"
    assert client.get(f"/api/vms/{r.get_json()['id']}").get_json()["created_by"] == "carol"


def test_list_filters_by_project(client, new_vm):
    a = new_vm("a", project_id="p1")
    new_vm("b", project_id="p2")
    assert [v["id"] for v in client.get("/api/vms?project_id=p1").get_json()] == [a["id"]]


def test_delete_vm(client, new_vm, sessions):
    vm = new_vm()
    r = client.delete(f"/api/vms/{vm['id']}")
    assert r.status_code == 204
    assert r.get_data() == b""
    assert client.get(f"/api/vms/{vm['id']}").status_code == 404
    with sessions() as s:
        assert vms_dao.get(s, vm["id"]) is None


def test_start_and_stop(client, registered_host, new_vm, host1):
    vm = new_vm()
    r = client.post(f"/api/vms/{vm['id']}/start", json={"host_id": registered_host["id"]})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["status"] == "up"
    assert r.get_json()["run_on_host"] == registered_host["id"]
    assert vm["id"] in host1.domains

    r = client.post(f"/api/vms/{vm['id']}/stop")
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["status"] == "down"


def test_start_without_host_id_schedules(client, registered_host, new_vm):
    vm = new_vm()
    r = client.post(f"/api/vms/{vm['id']}/start")
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["run_on_host"] == registered_host["id"]


def test_delete_running_vm_is_refused(client, running_vm):
    r = client.delete(f"/api/vms/{running_vm['id']}")
    assert r.status_code == 409
    fault = fault_of(r)
    assert fault["code"] == "ACTION_NOT_ALLOWED"
    assert fault["reasons"]
    assert client.get(f"/api/vms/{running_vm['id']}").status_code == 200


def test_start_on_unreachable_host_is_503_and_vm_stays_down(client, registered_host, new_vm, host1):
    vm = new_vm()
    host1.unreachable = True
    r = client.post(f"/api/vms/{vm['id']}/start", json={"host_id": registered_host["id"]})
    assert r.status_code == 503
    assert fault_of(r)["code"] == "HOST_UNREACHABLE"
    assert client.get(f"/api/vms/{vm['id']}").get_json()["status"] == "down"


def test_start_failing_on_host_is_502(client, registered_host, new_vm, host1):
    vm = new_vm()
    host1.fail("VM.create", "createErr")
    r = client.post(f"/api/vms/{vm['id']}/start", json={"host_id": registered_host["id"]})
    assert r.status_code == 502
    fault = fault_of(r)
    assert fault["code"] == "HOST_ERROR"
    assert fault["host"]["name"] == "host1"
    assert isinstance(fault["host"]["code"], int)
    assert client.get(f"/api/vms/{vm['id']}").get_json()["status"] == "down"


def test_unknown_vm_is_404(client):
    for method, path in [("get", "/api/vms/nope"), ("delete", "/api/vms/nope"), ("post", "/api/vms/nope/start"),
                         ("post", "/api/vms/nope/stop")]:
        r = getattr(client, method)(path)
        assert r.status_code == 404, (method, path)
        assert fault_of(r)["code"] == "NOT_FOUND"


def test_the_list_comes_in_pages_that_link_to_the_next(client, new_vm):
    """limit and marker (Nova's paging): a full page carries a Link to the next; the last does not."""
    ids = {name: new_vm(name, project_id="p1")["id"] for name in ("e", "a", "d", "b", "c")}
    seen, url, pages = [], "/api/vms?limit=2&project_id=p1", 0
    while url:
        r = client.get(url)
        assert r.status_code == 200, r.get_json()
        seen += [v["name"] for v in r.get_json()]
        pages += 1
        link = r.headers.get("Link")
        url = link[1:link.index(">")] if link else None
        if link:
            assert link.endswith('; rel="next"') and "project_id=p1" in link and "limit=2" in link
    assert seen == ["a", "b", "c", "d", "e"] and pages == 3
    assert "Link" not in client.get("/api/vms").headers          # 5 VMs: one page of the default 1000
    assert [v["name"] for v in client.get(f"/api/vms?marker={ids['c']}").get_json()] == ["d", "e"]


def test_a_page_counts_only_the_vms_the_caller_sees(app, sessions, client, new_vm):
    for name in ("a", "b", "c"):
        new_vm(name, project_id="other")
    mine = [new_vm(name, project_id="mine")["id"] for name in ("d", "e")]
    member = authenticated(app.test_client(), issue_token(sessions, "m", "member", project="mine"))
    r = member.get("/api/vms?limit=2")
    assert [v["id"] for v in r.get_json()] == mine and "marker=" + mine[1] in r.headers["Link"]
    assert member.get(r.headers["Link"][1:r.headers["Link"].index(">")]).get_json() == []


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "marker=no-such-vm"])
def test_a_bad_page_is_refused_with_the_field_named(client, new_vm, query):
    new_vm("a")
    r = client.get(f"/api/vms?{query}")
    fault = fault_of(r)
    assert r.status_code == 400 and fault["code"] == "BAD_REQUEST"
    assert [reason["vars"]["field"] for reason in fault["reasons"]] == [query.split("=")[0]]


def test_a_marker_of_a_vm_the_caller_does_not_see_is_no_marker(app, sessions, new_vm):
    hidden = new_vm("a", project_id="other")
    member = authenticated(app.test_client(), issue_token(sessions, "m", "member", project="mine"))
    r = member.get(f"/api/vms?marker={hidden['id']}")
    assert r.status_code == 400 and fault_of(r)["reasons"][0]["vars"]["field"] == "marker"


def test_vm_wrong_types_list_every_field(client):
    r = client.post("/api/vms", json={"name": 5, "memory_mb": "512", "vcpus": 1.5, "machine": "isapc"})
    assert r.status_code == 400
    fault = fault_of(r)
    assert fault["code"] == "BAD_REQUEST"
    fields = {reason["vars"]["field"] for reason in fault["reasons"]}
    assert fields == {"name", "memory_mb", "vcpus", "machine"}
    assert set(reason_codes(fault)) == {"INVALID_FIELD"}
    for reason in fault["reasons"]:
        assert reason["vars"]["errors"]


def test_vm_missing_name_is_400(client):
    r = client.post("/api/vms", json={})
    assert r.status_code == 400
    assert fault_of(r)["reasons"][0]["vars"] == {"field": "name", "errors": ["Missing data for required field."],
                                                 "location": "body"}


def test_start_with_unknown_field_is_400(client, new_vm):
    vm = new_vm()
    r = client.post(f"/api/vms/{vm['id']}/start", json={"host": "h"})
    assert r.status_code == 400
    assert fault_of(r)["reasons"][0]["vars"]["field"] == "host"


def test_allowed_tells_each_action_and_its_reasons(app, sessions, client, running_vm):
    vm_id = running_vm["id"]
    r = client.post(f"/api/vms/{vm_id}/nics", json={"name": "n1", "network": "ovirtmgmt", "active": False})
    assert r.status_code == 201, r.get_json()
    nic_id = r.get_json()["id"]
    r = client.get(f"/api/vms/{vm_id}/allowed")
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["vm"]["stop"] == {"allowed": True, "reasons": []}
    assert [x["code"] for x in body["vm"]["remove"]["reasons"]] == ["VM_NOT_DOWN"]
    assert [x["code"] for x in body["vm"]["add_controller"]["reasons"]] == ["NOT_HOTPLUGGABLE"]
    assert body["devices"][nic_id]["kind"] == "nic" and body["devices"][nic_id]["activate"]["allowed"]
    other = authenticated(app.test_client(), issue_token(sessions, "stranger", "member", project="elsewhere"))
    assert other.get(f"/api/vms/{vm_id}/allowed").status_code == 404
    assert app.test_client().get(f"/api/vms/{vm_id}/allowed").status_code == 401


def test_usb_host_device_attach_and_detach_through_the_api(app, sessions, client, host1, running_vm):
    from engine.dao import hosts as hosts_dao
    key = {"name": "usb_1_5", "capability": "usb_device", "vendorId": "0781", "productId": "5567",
           "portPath": "1-2", "allowed": True}
    host1.hostdevs[:] = [key]
    with sessions() as s:
        host_id = hosts_dao.get_by_name(s, "host1").id
    assert client.post(f"/api/hosts/{host_id}/refresh").status_code == 200
    (dev,) = client.get(f"/api/hosts/{host_id}/devices").get_json()
    vm_id = running_vm["id"]
    r = client.post(f"/api/vms/{vm_id}/hostdevs", json={"host_device_id": dev["id"]})
    assert r.status_code == 201, r.get_json()
    hostdev = r.get_json()
    assert (hostdev["plugged"], hostdev["host_device_id"], hostdev["source"]) == (True, dev["id"], {"portPath": "1-2"})
    assert (hostdev["present"], hostdev["required"]) == (True, False)
    host1.hostdevs.clear()                       # pulled: the VM keeps it, flagged
    assert client.post(f"/api/hosts/{host_id}/refresh").status_code == 200
    pulled = client.get(f"/api/vms/{vm_id}/hostdevs/{hostdev['id']}").get_json()
    assert (pulled["present"], pulled["plugged"]) == (False, True)
    host1.hostdevs[:] = [key]
    assert client.post(f"/api/hosts/{host_id}/refresh").status_code == 200
    assert client.get(f"/api/vms/{vm_id}/allowed").get_json()["devices"][hostdev["id"]]["kind"] == "hostdev"
    assert client.delete(f"/api/vms/{vm_id}/hostdevs/{hostdev['id']}").status_code == 409   # deactivate first
    r = client.post(f"/api/vms/{vm_id}/hostdevs/{hostdev['id']}/deactivate")
    assert r.status_code == 200 and r.get_json()["plugged"] is False
    assert client.delete(f"/api/vms/{vm_id}/hostdevs/{hostdev['id']}").status_code == 204
    assert client.get(f"/api/hosts/{host_id}/devices").get_json()[0]["status"] == "available"
    member = authenticated(app.test_client(), issue_token(sessions, "m", "member", project=running_vm["project_id"]))
    assert member.post(f"/api/vms/{vm_id}/hostdevs", json={"host_device_id": dev["id"]}).status_code == 403
