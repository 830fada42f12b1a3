"""/api/vms/{vm}/nics: the NIC collection, update and removal, and activate / deactivate (hot-plug
through the fake host when the VM runs, the plugged flag alone when it is down)."""
from __future__ import annotations

import pytest

from engine.dao import nics as nics_dao
from tests.unit.engine.api.conftest import fault_of, reason_codes


@pytest.fixture
def add_nic(client):
    def add(vm, name="nic1", expect=201, **fields):
        r = client.post(f"/api/vms/{vm['id']}/nics", json={"name": name, "network": "ovirtmgmt", **fields})
        assert r.status_code == expect, r.get_json()
        return r.get_json()

    return add


def nic_url(vm, nic, action=""):
    return f"/api/vms/{vm['id']}/nics/{nic['id']}" + (f"/{action}" if action else "")


def db_nic(sessions, vm, nic):
    """(is_plugged, plug_state, address) straight from the database."""
    with sessions() as s:
        row = nics_dao.get(s, vm["id"], nic["id"])
        return row.device.is_plugged, row.device.plug_state, row.device.address


# ---- collection, get, update, delete on a VM that is down --------------------------------------


def test_add_nic_to_down_vm_is_plugged_in_database_only(client, new_vm, add_nic, fake_hosts):
    vm = new_vm()
    r = client.post(f"/api/vms/{vm['id']}/nics", json={"name": "eth0", "network": "ovirtmgmt", "model": "e1000"})
    assert r.status_code == 201, r.get_json()
    nic = r.get_json()
    assert r.headers["Location"].endswith(nic_url(vm, nic))
    assert nic["vm_id"] == vm["id"] and nic["name"] == "eth0" and nic["model"] == "e1000"
    assert nic["plugged"] is True and nic["plug_state"] == "stable"
    assert nic["address"] is None
    assert nic["linked"] is True
    assert nic["alias"] == f"ua-{nic['id']}"
    assert len(nic["mac"]) == 17
    assert fake_hosts.by_name == {}  # no host was called


def test_add_nic_inactive(new_vm, add_nic):
    nic = add_nic(new_vm(), active=False, mac="56:6f:1a:00:10:01", linked=False)
    assert nic["plugged"] is False
    assert nic["mac"] == "56:6f:1a:00:10:01"
    assert nic["linked"] is False


def test_list_and_get_nics(client, new_vm, add_nic):
    vm = new_vm()
    a, b = add_nic(vm, "a"), add_nic(vm, "b", active=False)
    assert sorted(n["id"] for n in client.get(f"/api/vms/{vm['id']}/nics").get_json()) == sorted([a["id"], b["id"]])
    assert client.get(nic_url(vm, a)).get_json() == a


@pytest.mark.parametrize("method", ["put", "patch"])
def test_update_nic_on_down_vm(client, new_vm, add_nic, method):
    vm = new_vm()
    nic = add_nic(vm)
    r = getattr(client, method)(nic_url(vm, nic), json={"network": "br0", "model": "rtl8139"})
    assert r.status_code == 200, r.get_json()
    updated = r.get_json()
    assert updated["network"] == "br0" and updated["model"] == "rtl8139"
    assert updated["name"] == nic["name"] and updated["mac"] == nic["mac"]


def test_delete_nic(client, new_vm, add_nic):
    vm = new_vm()
    nic = add_nic(vm)
    r = client.delete(nic_url(vm, nic))
    assert r.status_code == 204
    assert client.get(nic_url(vm, nic)).status_code == 404
    assert client.get(f"/api/vms/{vm['id']}/nics").get_json() == []


def test_activate_and_deactivate_on_down_vm(client, new_vm, add_nic):
    vm = new_vm()
    nic = add_nic(vm, active=False)
    r = client.post(nic_url(vm, nic, "activate"))
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["plugged"] is True
    r = client.post(nic_url(vm, nic, "deactivate"), json={})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["plugged"] is False and r.get_json()["address"] is None


# ---- hot-plug on a running VM -----------------------------------------------------------------


def test_add_active_nic_to_running_vm_hotplugs_it(running_vm, add_nic, host1):
    nic = add_nic(running_vm)
    assert nic["plugged"] is True and nic["plug_state"] == "stable"
    assert nic["address"]["type"] == "pci" and nic["address"]["slot"]
    assert [p["nic"]["alias"] for p in host1.sent("VM.hotplugNic")] == [nic["alias"]]


def test_activate_then_deactivate_running(client, running_vm, add_nic, host1, sessions):
    nic = add_nic(running_vm, active=False)
    r = client.post(nic_url(running_vm, nic, "activate"))
    assert r.status_code == 200, r.get_json()
    plugged = r.get_json()
    assert plugged["plugged"] is True and plugged["address"]["type"] == "pci"
    assert host1.domain(running_vm["id"]).find(alias=nic["alias"]) is not None

    r = client.post(nic_url(running_vm, nic, "deactivate"))
    assert r.status_code == 200, r.get_json()
    unplugged = r.get_json()
    assert unplugged["plugged"] is False and unplugged["plug_state"] == "stable"
    assert unplugged["address"] is None
    assert db_nic(sessions, running_vm, nic) == (False, "stable", None)
    assert host1.domain(running_vm["id"]).find(alias=nic["alias"]) is None


def test_deactivate_pending_is_202_unplugging(client, running_vm, add_nic, host1):
    nic = add_nic(running_vm)
    host1.pending_unplug = True
    r = client.post(nic_url(running_vm, nic, "deactivate"))
    assert r.status_code == 202, r.get_json()
    assert r.get_json()["plug_state"] == "unplugging"
    assert client.get(nic_url(running_vm, nic)).get_json()["plug_state"] == "unplugging"


def test_second_command_while_in_flight_is_409_and_changes_nothing(client, running_vm, add_nic, host1, sessions):
    nic = add_nic(running_vm)
    host1.pending_unplug = True
    assert client.post(nic_url(running_vm, nic, "deactivate")).status_code == 202
    before = db_nic(sessions, running_vm, nic)
    calls = len(host1.calls)

    for action in ("deactivate", "activate"):
        r = client.post(nic_url(running_vm, nic, action))
        assert r.status_code == 409, r.get_json()
        fault = fault_of(r)
        assert fault["code"] == "OPERATION_IN_FLIGHT"
        assert "DEVICE_IN_FLIGHT" in reason_codes(fault)
    assert db_nic(sessions, running_vm, nic) == before
    assert len(host1.calls) == calls


def test_hotplug_failure_is_502_with_host_code(client, running_vm, add_nic, host1, sessions):
    nic = add_nic(running_vm, active=False)
    host1.fail("VM.hotplugNic", 49)
    r = client.post(nic_url(running_vm, nic, "activate"))
    assert r.status_code == 502
    fault = fault_of(r)
    assert fault["code"] == "HOST_ERROR"
    assert fault["host"]["code"] == 49
    assert fault["host"]["name"] == "host1"
    assert fault["host"]["message"]
    after = client.get(nic_url(running_vm, nic)).get_json()
    assert after["plugged"] is False and after["plug_state"] == "stable"
    assert after["last_error"]


def test_add_nic_whose_hotplug_fails_answers_the_host_fault_and_keeps_it(client, running_vm, host1):
    host1.fail("VM.hotplugNic", 49)
    r = client.post(f"/api/vms/{running_vm['id']}/nics", json={"name": "eth1", "network": "ovirtmgmt"})
    assert r.status_code == 502
    assert fault_of(r)["host"]["code"] == 49
    [nic] = client.get(f"/api/vms/{running_vm['id']}/nics").get_json()
    assert nic["name"] == "eth1"
    assert nic["plugged"] is False and nic["plug_state"] == "stable" and nic["address"] is None
    assert nic["last_error"]


def test_hotunplug_failure_is_502_and_nic_stays_plugged(client, running_vm, add_nic, host1):
    nic = add_nic(running_vm)
    host1.fail("VM.hotunplugNic", 50)
    r = client.post(nic_url(running_vm, nic, "deactivate"))
    assert r.status_code == 502
    assert fault_of(r)["host"]["code"] == 50
    after = client.get(nic_url(running_vm, nic)).get_json()
    assert after["plugged"] is True and after["plug_state"] == "stable" and after["address"]


def test_unreachable_host_is_503_and_database_unchanged(client, running_vm, add_nic, host1, sessions):
    nic = add_nic(running_vm, active=False)
    before = db_nic(sessions, running_vm, nic)
    host1.unreachable = True
    r = client.post(nic_url(running_vm, nic, "activate"))
    assert r.status_code == 503
    fault = fault_of(r)
    assert fault["code"] == "HOST_UNREACHABLE"
    assert fault["host"]["name"] == "host1"
    assert db_nic(sessions, running_vm, nic) == before


def test_cando_refusal_lists_every_reason(client, host1, new_vm, add_nic):
    cluster = client.post("/api/clusters", json={"name": "old", "compat_version": "3.0"}).get_json()
    host = client.post("/api/hosts", json={"name": "host1", "url": "http://127.0.0.1:54321/jsonrpc",
                                           "cluster_id": cluster["id"]}).get_json()
    vm = new_vm("xp", os_type="windows_xp", cluster_id=cluster["id"])
    nic = add_nic(vm, active=False, network="nosuchnet")
    assert client.post(f"/api/vms/{vm['id']}/start", json={"host_id": host["id"]}).status_code == 200
    calls = len(host1.calls)

    r = client.post(nic_url(vm, nic, "activate"))
    assert r.status_code == 409
    fault = fault_of(r)
    assert fault["code"] == "ACTION_NOT_ALLOWED"
    codes = reason_codes(fault)
    for code in ("OS_NIC_HOTPLUG_UNSUPPORTED", "CLUSTER_VERSION_HOTPLUG_UNSUPPORTED", "NETWORK_NOT_ON_HOST"):
        assert code in codes
    for reason in fault["reasons"]:
        assert reason["message"] and isinstance(reason["vars"], dict)
    assert len(host1.calls) == calls
    assert client.get(nic_url(vm, nic)).get_json()["plugged"] is False


def test_update_plugged_nic_on_running_vm_is_refused(client, running_vm, add_nic):
    nic = add_nic(running_vm)
    r = client.patch(nic_url(running_vm, nic), json={"network": "br0"})
    assert r.status_code == 409
    assert "NIC_PLUGGED_ON_RUNNING_VM" in reason_codes(fault_of(r))
    assert client.get(nic_url(running_vm, nic)).get_json()["network"] == "ovirtmgmt"


def test_link_change_goes_live(client, running_vm, add_nic, host1):
    nic = add_nic(running_vm)
    r = client.patch(nic_url(running_vm, nic), json={"linked": False})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["linked"] is False
    assert host1.sent("VM.updateNic")[-1]["nic"]["linkActive"] is False


def test_remove_plugged_nic_on_running_vm_is_refused(client, running_vm, add_nic):
    nic = add_nic(running_vm)
    r = client.delete(nic_url(running_vm, nic))
    assert r.status_code == 409
    assert "NIC_PLUGGED_ON_RUNNING_VM" in reason_codes(fault_of(r))
    assert client.get(nic_url(running_vm, nic)).status_code == 200


# ---- ids and input --------------------------------------------------------------------------------


def test_unknown_vm_or_nic_is_404(client, new_vm, add_nic):
    vm = new_vm()
    nic = add_nic(vm)
    ghost_vm = {"id": "00000000-0000-0000-0000-000000000000"}
    ghost_nic = {"id": "00000000-0000-0000-0000-000000000001"}
    requests = [
        ("get", f"/api/vms/{ghost_vm['id']}/nics", None),
        ("post", f"/api/vms/{ghost_vm['id']}/nics", {"name": "n", "network": "ovirtmgmt"}),
        ("get", nic_url(ghost_vm, nic), None),
        ("get", nic_url(vm, ghost_nic), None),
        ("patch", nic_url(vm, ghost_nic), {"linked": False}),
        ("put", nic_url(vm, ghost_nic), {"linked": False}),
        ("delete", nic_url(vm, ghost_nic), None),
        ("post", nic_url(vm, ghost_nic, "activate"), None),
        ("post", nic_url(vm, ghost_nic, "deactivate"), None),
        ("post", nic_url(ghost_vm, nic, "activate"), None),
    ]
    for method, url, body in requests:
        r = getattr(client, method)(url, json=body) if body is not None else getattr(client, method)(url)
        assert r.status_code == 404, (method, url, r.get_json())
        assert fault_of(r)["code"] == "NOT_FOUND"


def test_nic_of_another_vm_is_404(client, new_vm, add_nic):
    vm1, vm2 = new_vm("a"), new_vm("b")
    nic = add_nic(vm1)
    assert client.get(nic_url(vm2, nic)).status_code == 404


def test_add_nic_unknown_field_is_400(client, new_vm):
    vm = new_vm()
    r = client.post(f"/api/vms/{vm['id']}/nics", json={"name": "n", "network": "ovirtmgmt", "plugged": True})
    assert r.status_code == 400
    fault = fault_of(r)
    assert fault["code"] == "BAD_REQUEST"
    assert fault["reasons"] == [{"code": "INVALID_FIELD", "message": "plugged: Unknown field.",
                                 "vars": {"field": "plugged", "errors": ["Unknown field."], "location": "body"}}]


def test_add_nic_wrong_types_are_400(client, new_vm):
    vm = new_vm()
    r = client.post(f"/api/vms/{vm['id']}/nics",
                    json={"name": "n", "network": 7, "linked": "yes", "active": 1, "mac": "zz", "model": "ne2k"})
    assert r.status_code == 400
    fields = {reason["vars"]["field"] for reason in fault_of(r)["reasons"]}
    assert fields == {"network", "linked", "active", "mac", "model"}
    assert client.get(f"/api/vms/{vm['id']}/nics").get_json() == []


def test_add_nic_malformed_json_is_400(client, new_vm):
    vm = new_vm()
    r = client.post(f"/api/vms/{vm['id']}/nics", data='{"name": "n", ', content_type="application/json")
    assert r.status_code == 400
    assert fault_of(r)["code"] == "MALFORMED_JSON"


def test_activate_with_a_body_field_is_400(client, new_vm, add_nic):
    vm = new_vm()
    nic = add_nic(vm, active=False)
    r = client.post(nic_url(vm, nic, "activate"), json={"force": True})
    assert r.status_code == 400
    assert client.get(nic_url(vm, nic)).get_json()["plugged"] is False
