"""/api/vms/{vm}/controllers and /api/vms/{vm}/redirdevs through Flask's test client, with the fake
host behind the running VMs."""
from __future__ import annotations

import pytest

from tests.unit.engine.api.conftest import fault_of, reason_codes

GHOST = "00000000-0000-0000-0000-000000000000"


def url(vm, path, dev=None, action=""):
    out = f"/api/vms/{vm['id']}/{path}"
    if dev is not None:
        out += f"/{dev['id'] if isinstance(dev, dict) else dev}"
    return out + (f"/{action}" if action else "")


@pytest.fixture
def post(client):
    def post(vm, path, expect=201, **body):
        r = client.post(url(vm, path), json=body)
        assert r.status_code == expect, r.get_json()
        return r.get_json()

    return post


@pytest.fixture
def spice_running(client, registered_host, new_vm):
    vm = new_vm("spicy", graphics="spice")
    r = client.post(f"/api/vms/{vm['id']}/start", json={"host_id": registered_host["id"]})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def listed(client, vm, path):
    r = client.get(url(vm, path))
    assert r.status_code == 200, r.get_json()
    return r.get_json()


# ---- controllers -------------------------------------------------------------------------------


def test_add_controllers_with_count(client, new_vm, post, fake_hosts):
    vm = new_vm()
    r = client.post(url(vm, "controllers"), json={"type": "usb", "model": "ehci", "count": 2})
    assert r.status_code == 201, r.get_json()
    first = r.get_json()
    assert r.headers["Location"].endswith(url(vm, "controllers", first))
    assert (first["type"], first["model"], first["index"], first["plugged"], first["plug_state"]) == \
        ("usb", "ehci", 0, True, "stable")
    assert first["alias"] == f"ua-{first['id']}" and first["address"] is None
    got = listed(client, vm, "controllers")
    assert sorted((c["model"], c["index"]) for c in got) == [("ehci", 0), ("ehci", 1)]
    assert client.get(url(vm, "controllers", first)).get_json() == first
    assert fake_hosts.by_name == {}


@pytest.mark.parametrize("short, model", [("ehci", "ehci"), ("xhci", "qemu-xhci"), ("uhci", "piix3-uhci"),
                                          ("nec-xhci", "nec-xhci")])
def test_add_controller_by_short_or_libvirt_name(new_vm, post, short, model):
    assert post(new_vm(), "controllers", model=short)["model"] == model


def test_add_xhci_with_ports_and_index(new_vm, post):
    got = post(new_vm(), "controllers", model="qemu-xhci", ports=8, index=4)
    assert (got["model"], got["index"], got["ports"], got["master"]) == ("qemu-xhci", 4, 8, None)


def test_add_ich9_ehci1_with_companions(client, new_vm, post):
    vm = new_vm()
    first = post(vm, "controllers", model="ich9-ehci1", companions=True)
    assert (first["model"], first["index"], first["master"]) == ("ich9-ehci1", 0, None)
    got = sorted((c["model"], c["index"], c["master"]) for c in listed(client, vm, "controllers"))
    assert got == [("ich9-ehci1", 0, None), ("ich9-uhci1", 0, 0), ("ich9-uhci2", 0, 2), ("ich9-uhci3", 0, 4)]


@pytest.mark.parametrize("body, code", [
    ({"model": "ehci", "index": 0}, "CONTROLLER_INDEX_IN_USE"),
    ({"model": "ehci", "index": 32}, "CONTROLLER_INDEX_INVALID"),
    ({"model": "ehci", "count": 9}, "FIELD_INVALID"),
    ({"model": "ehci", "count": 0}, "FIELD_INVALID"),
    ({"model": "ohci9000"}, "CONTROLLER_MODEL_UNKNOWN"),
    ({"model": "ehci", "type": "scsi"}, "CONTROLLER_TYPE_UNSUPPORTED"),
    ({"model": "ehci", "ports": 4}, "FIELD_INVALID"),
    ({"model": "ehci", "companions": True}, "FIELD_INVALID"),
])
def test_add_controller_refusals_are_409_and_add_nothing(client, new_vm, post, body, code):
    vm = new_vm()
    post(vm, "controllers", model="xhci", index=0)
    r = client.post(url(vm, "controllers"), json=body)
    assert r.status_code == 409, r.get_json()
    fault = fault_of(r)
    assert fault["code"] == "ACTION_NOT_ALLOWED"
    assert reason_codes(fault) == [code]
    assert len(listed(client, vm, "controllers")) == 1
    events = client.get("/api/events", query_string={"vm_id": vm["id"], "code": "CONTROLLER_ADD_REFUSED"})
    assert len(events.get_json()) == 1


@pytest.mark.parametrize("body", [{"model": "ehci", "count": "2"}, {"model": "ehci", "companions": "yes"},
                                  {"model": "ehci", "bus": "usb"}, {}, {"model": ""}, {"model": "ehci", "index": 1.5}])
def test_add_controller_malformed_is_400(client, new_vm, body):
    vm = new_vm()
    r = client.post(url(vm, "controllers"), json=body)
    assert r.status_code == 400, r.get_json()
    assert fault_of(r)["code"] == "BAD_REQUEST"
    assert listed(client, vm, "controllers") == []


def test_add_controller_to_running_vm_is_refused_without_a_host_call(client, running_vm, host1):
    calls = len(host1.calls)
    r = client.post(url(running_vm, "controllers"), json={"model": "qemu-xhci"})
    assert r.status_code == 409, r.get_json()
    fault = fault_of(r)
    assert reason_codes(fault) == ["NOT_HOTPLUGGABLE"]
    assert "stop the VM first" in fault["reasons"][0]["message"]
    assert len(host1.calls) == calls
    assert listed(client, running_vm, "controllers") == []


def test_remove_controller(client, new_vm, post):
    vm = new_vm()
    first = post(vm, "controllers", model="ehci")
    r = client.delete(url(vm, "controllers", first))
    assert r.status_code == 204
    assert client.get(url(vm, "controllers", first)).status_code == 404
    assert listed(client, vm, "controllers") == []


def test_remove_ehci_removes_its_companions(client, new_vm, post):
    vm = new_vm()
    keep = post(vm, "controllers", model="xhci")
    ehci = post(vm, "controllers", model="ich9-ehci1", companions=True)
    assert client.delete(url(vm, "controllers", ehci)).status_code == 204
    assert [c["id"] for c in listed(client, vm, "controllers")] == [keep["id"]]


def test_remove_controller_of_running_vm_is_refused_without_a_host_call(client, registered_host, new_vm, post,
                                                                        host1):
    vm = new_vm()
    ctrl = post(vm, "controllers", model="ehci")
    assert client.post(f"/api/vms/{vm['id']}/start", json={"host_id": registered_host["id"]}).status_code == 200
    calls = len(host1.calls)
    r = client.delete(url(vm, "controllers", ctrl))
    assert r.status_code == 409
    fault = fault_of(r)
    assert reason_codes(fault) == ["NOT_HOTPLUGGABLE"] and "stop the VM first" in fault["reasons"][0]["message"]
    assert len(host1.calls) == calls
    assert client.get(url(vm, "controllers", ctrl)).status_code == 200


def test_remove_last_controller_carrying_a_redirdev_is_refused(client, new_vm, post):
    vm = new_vm(graphics="spice")
    ctrl = post(vm, "controllers", model="ehci")
    post(vm, "redirdevs", type="spicevmc")
    r = client.delete(url(vm, "controllers", ctrl))
    assert r.status_code == 409
    assert reason_codes(fault_of(r)) == ["CONTROLLER_CARRIES_DEVICES"]
    assert client.get(url(vm, "controllers", ctrl)).status_code == 200


def test_controllers_have_no_activate_action(client, new_vm, post):
    vm = new_vm()
    ctrl = post(vm, "controllers", model="ehci")
    for action in ("activate", "deactivate"):
        r = client.post(url(vm, "controllers", ctrl, action))
        assert r.status_code in (404, 405)
    assert client.get(url(vm, "controllers", ctrl)).get_json()["plugged"] is True


# ---- redirdevs ---------------------------------------------------------------------------------


def test_add_spicevmc_to_down_vm(client, new_vm, post, fake_hosts):
    vm = new_vm(graphics="spice")
    r = client.post(url(vm, "redirdevs"), json={"bus": "usb", "type": "spicevmc"})
    assert r.status_code == 201, r.get_json()
    dev = r.get_json()
    assert r.headers["Location"].endswith(url(vm, "redirdevs", dev))
    assert (dev["bus"], dev["type"], dev["plugged"], dev["plug_state"], dev["address"]) == \
        ("usb", "spicevmc", True, "stable", None)
    assert listed(client, vm, "redirdevs") == [dev]
    assert fake_hosts.by_name == {}


def test_add_spicevmc_to_running_vm_hotplugs_it(client, spice_running, post, host1):
    dev = post(spice_running, "redirdevs", type="spicevmc")
    assert (dev["plugged"], dev["plug_state"]) == (True, "stable")
    live = host1.domain(spice_running["id"]).find(alias=dev["alias"])
    assert dev["address"] == live["address"] and dev["address"]["type"] == "usb"
    assert [p["redirdev"]["alias"] for p in host1.sent("VM.hotplugRedirdev")] == [dev["alias"]]


def test_add_tcp(client, new_vm, post):
    dev = post(new_vm(), "redirdevs", type="tcp", host="10.0.0.5", port=4000)
    assert (dev["type"], dev["host"], dev["port"], dev["mode"]) == ("tcp", "10.0.0.5", 4000, None)


def test_add_tcp_without_host_and_port_is_refused(client, new_vm):
    vm = new_vm()
    r = client.post(url(vm, "redirdevs"), json={"type": "tcp"})
    assert r.status_code == 409, r.get_json()
    fault = fault_of(r)
    assert [(x["code"], x["vars"]["field"]) for x in fault["reasons"]] == [("FIELD_INVALID", "host"),
                                                                          ("FIELD_INVALID", "port")]
    assert listed(client, vm, "redirdevs") == []


def test_add_spicevmc_to_vnc_vm_is_refused(client, new_vm):
    vm = new_vm(graphics="vnc")
    r = client.post(url(vm, "redirdevs"), json={"type": "spicevmc"})
    assert r.status_code == 409
    assert reason_codes(fault_of(r)) == ["SPICE_REQUIRED"]


def test_third_redirdev_on_pc_default_controller_is_refused(client, new_vm, post):
    vm = new_vm(graphics="spice")
    post(vm, "redirdevs")
    post(vm, "redirdevs")
    r = client.post(url(vm, "redirdevs"), json={})
    assert r.status_code == 409
    assert reason_codes(fault_of(r)) == ["NO_FREE_USB_PORT"]
    post(vm, "controllers", model="ehci")
    post(vm, "redirdevs")
    assert len(listed(client, vm, "redirdevs")) == 3


def test_deactivate_and_activate_on_running_vm(client, spice_running, post, host1):
    dev = post(spice_running, "redirdevs")
    r = client.post(url(spice_running, "redirdevs", dev, "deactivate"))
    assert r.status_code == 200, r.get_json()
    assert (r.get_json()["plugged"], r.get_json()["plug_state"], r.get_json()["address"]) == (False, "stable", None)
    assert host1.sent("VM.hotunplugRedirdev") == [{"vmId": spice_running["id"], "redirdev": {"alias": dev["alias"]}}]
    r = client.post(url(spice_running, "redirdevs", dev, "activate"), json={})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["plugged"] is True and r.get_json()["address"]["type"] == "usb"


def test_pending_deactivate_is_202_plugged_false_unplugging(client, spice_running, post, host1):
    dev = post(spice_running, "redirdevs")
    host1.pending_unplug = True
    r = client.post(url(spice_running, "redirdevs", dev, "deactivate"))
    assert r.status_code == 202, r.get_json()
    body = r.get_json()
    assert (body["plugged"], body["plug_state"]) == (False, "unplugging")
    assert body["address"] == dev["address"]     # still on the guest's bus until the guest lets go
    again = client.get(url(spice_running, "redirdevs", dev)).get_json()
    assert (again["plugged"], again["plug_state"]) == (False, "unplugging")
    r = client.post(url(spice_running, "redirdevs", dev, "activate"))
    assert r.status_code == 409 and fault_of(r)["code"] == "OPERATION_IN_FLIGHT"


def test_remove_plugged_redirdev_on_running_vm_is_refused(client, spice_running, post):
    dev = post(spice_running, "redirdevs")
    r = client.delete(url(spice_running, "redirdevs", dev))
    assert r.status_code == 409
    assert reason_codes(fault_of(r)) == ["PLUGGED_ON_RUNNING_VM"]
    assert client.get(url(spice_running, "redirdevs", dev)).status_code == 200


def test_remove_deactivated_redirdev_on_running_vm(client, spice_running, post):
    dev = post(spice_running, "redirdevs")
    assert client.post(url(spice_running, "redirdevs", dev, "deactivate")).status_code == 200
    assert client.delete(url(spice_running, "redirdevs", dev)).status_code == 204
    assert client.get(url(spice_running, "redirdevs", dev)).status_code == 404


def test_hotplug_failure_is_502_and_kept_deactivated(client, spice_running, post, host1):
    dev = post(spice_running, "redirdevs", active=False)
    host1.fail("VM.hotplugRedirdev", "redirdevPlugFailed")
    r = client.post(url(spice_running, "redirdevs", dev, "activate"))
    assert r.status_code == 502
    assert fault_of(r)["host"]["name"] == "host1"
    after = client.get(url(spice_running, "redirdevs", dev)).get_json()
    assert (after["plugged"], after["plug_state"]) == (False, "stable") and after["last_error"]


def test_add_redirdev_unknown_field_is_400(client, new_vm):
    vm = new_vm(graphics="spice")
    r = client.post(url(vm, "redirdevs"), json={"type": "spicevmc", "plugged": True})
    assert r.status_code == 400
    assert fault_of(r)["code"] == "BAD_REQUEST"


# ---- ids: unknown ones and other kinds are 404 ---------------------------------------------------


@pytest.mark.parametrize("path", ["controllers", "redirdevs"])
def test_unknown_vm_or_device_is_404(client, new_vm, post, path):
    vm = new_vm(graphics="spice")
    dev = post(vm, path, **({"model": "ehci"} if path == "controllers" else {}))
    ghost_vm = {"id": GHOST}
    requests = [("get", url(ghost_vm, path)), ("post", url(ghost_vm, path)), ("get", url(ghost_vm, path, dev)),
                ("get", url(vm, path, GHOST)), ("delete", url(vm, path, GHOST)), ("delete", url(ghost_vm, path, dev))]
    if path == "redirdevs":
        requests += [("post", url(vm, path, GHOST, "activate")), ("post", url(vm, path, GHOST, "deactivate")),
                     ("post", url(ghost_vm, path, dev, "activate"))]
    for method, where in requests:
        body = {"model": "ehci"} if (method, where) == ("post", url(ghost_vm, path)) and path == "controllers" \
            else None
        r = getattr(client, method)(where, json=body) if body is not None else getattr(client, method)(where)
        assert r.status_code == 404, (method, where, r.get_json())
        assert fault_of(r)["code"] == "NOT_FOUND"


def test_kinds_do_not_mix(client, new_vm, post):
    """A NIC id on the redirdev or controller routes (and the other way round) is a 404, and changes
    nothing."""
    vm = new_vm(graphics="spice")
    nic = post(vm, "nics", name="eth0", network="ovirtmgmt")
    ctrl = post(vm, "controllers", model="ehci")
    redir = post(vm, "redirdevs")
    wrong = [("redirdevs", nic), ("redirdevs", ctrl), ("controllers", nic), ("controllers", redir),
             ("nics", ctrl), ("nics", redir)]
    for path, dev in wrong:
        for method, action in (("get", ""), ("delete", "")) + ((("post", "activate"), ("post", "deactivate"))
                                                               if path != "controllers" else ()):
            r = getattr(client, method)(url(vm, path, dev, action))
            assert r.status_code == 404, (path, dev, method, action, r.get_json())
            assert fault_of(r)["code"] == "NOT_FOUND"
    assert client.get(url(vm, "nics", nic)).get_json()["plugged"] is True
    assert client.get(url(vm, "controllers", ctrl)).status_code == 200
    assert client.get(url(vm, "redirdevs", redir)).get_json()["plugged"] is True
    assert [d["id"] for d in listed(client, vm, "redirdevs")] == [redir["id"]]
    assert [d["id"] for d in listed(client, vm, "controllers")] == [ctrl["id"]]
