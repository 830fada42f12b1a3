"""/api/flavors: create, list, get, delete, extra specs; VMs created from a flavor; concurrent
duplicate names."""
from __future__ import annotations

import json
import threading

import pytest

from engine.commands import add_flavor
from engine.dao import devices as devices_dao
from engine.dao import vms as vms_dao
from tests.unit.engine.api.conftest import fault_of, reason_codes
from tests.unit.engine.tokens import authenticated, issue_token

SPICE = {"bus": "usb", "type": "spicevmc"}
TCP = {"bus": "usb", "type": "tcp", "host": "usbhub.example", "port": 4000}


@pytest.fixture
def new_flavor(client):
    def make(name: str = "redir", **fields):
        body = {"name": name, "memory_mb": 512, "vcpus": 2, **fields}
        r = client.post("/api/flavors", json=body)
        assert r.status_code == 201, r.get_json()
        return r.get_json()

    return make


def test_create_get_list_flavor(client):
    r = client.post("/api/flavors", json={"name": "m1.usb", "memory_mb": 1024, "vcpus": 2, "disk_gb": 10,
                                          "extra_specs": {"usb_redirection_devices": [SPICE, TCP],
                                                          "hw:usb_model": "qemu-xhci", "quota:cpu_shares": 512}})
    assert r.status_code == 201, r.get_json()
    flavor = r.get_json()
    assert r.headers["Location"].endswith(f"/api/flavors/{flavor['id']}")
    assert (flavor["name"], flavor["memory_mb"], flavor["vcpus"], flavor["disk_gb"], flavor["is_public"]) == \
        ("m1.usb", 1024, 2, 10, True)
    # extra specs are stored as strings, as in Nova
    assert flavor["extra_specs"] == {"usb_redirection_devices": json.dumps([SPICE, TCP]),
                                     "hw:usb_model": "qemu-xhci", "quota:cpu_shares": "512"}
    assert client.get(f"/api/flavors/{flavor['id']}").get_json() == flavor
    assert [f["id"] for f in client.get("/api/flavors").get_json()] == [flavor["id"]]


def test_create_with_an_id(client, new_flavor):
    flavor = new_flavor(id="m1.small")
    assert flavor["id"] == "m1.small"
    assert client.get("/api/flavors/m1.small").status_code == 200


def test_duplicate_name_is_409_name_in_use(client, new_flavor):
    new_flavor("dup")
    r = client.post("/api/flavors", json={"name": "dup", "memory_mb": 256, "vcpus": 1})
    assert r.status_code == 409
    fault = fault_of(r)
    assert reason_codes(fault) == ["NAME_IN_USE"]
    assert fault["reasons"][0]["vars"]["name"] == "dup"


def test_duplicate_id_is_409(client, new_flavor):
    new_flavor("a", id="same")
    r = client.post("/api/flavors", json={"id": "same", "name": "b", "memory_mb": 256, "vcpus": 1})
    assert r.status_code == 409
    assert reason_codes(fault_of(r)) == ["FLAVOR_ID_IN_USE"]


def test_bad_extra_specs_are_400_naming_each_key(client):
    r = client.post("/api/flavors", json={"name": "bad", "memory_mb": 256, "vcpus": 1, "extra_specs": {
        "hw:usb_model": "ehci", "hw:cpu_policy": "dedicated",
        "usb_redirection_devices": [{"bus": "usb", "type": "tcp", "host": "h"}]}})
    assert r.status_code == 400
    fault = fault_of(r)
    assert fault["code"] == "BAD_REQUEST"
    assert sorted(reason_codes(fault)) == ["SPEC_KEY_UNKNOWN", "SPEC_VALUE_INVALID", "SPEC_VALUE_INVALID"]
    assert {r["vars"].get("path", r["vars"]["key"]) for r in fault["reasons"]} == \
        {"hw:usb_model", "hw:cpu_policy", "usb_redirection_devices[0].port"}
    assert client.get("/api/flavors").get_json() == []


def test_create_syntax_errors_are_400(client):
    r = client.post("/api/flavors", json={"name": "", "memory_mb": "512", "extra_specs": {"k": None}, "x": 1})
    assert r.status_code == 400
    fields = {reason["vars"]["field"] for reason in fault_of(r)["reasons"]}
    assert {"name", "memory_mb", "vcpus", "x"} <= fields


def test_delete_flavor(client, new_flavor):
    flavor = new_flavor()
    r = client.delete(f"/api/flavors/{flavor['id']}")
    assert r.status_code == 204
    assert client.get(f"/api/flavors/{flavor['id']}").status_code == 404
    r = client.delete(f"/api/flavors/{flavor['id']}")
    assert r.status_code == 404
    assert reason_codes(fault_of(r)) == ["FLAVOR_NOT_FOUND"]


def test_put_extra_specs_replaces_them(client, new_flavor):
    flavor = new_flavor(extra_specs={"hw:usb_model": "nec-xhci", "quota:a": "1"})
    r = client.put(f"/api/flavors/{flavor['id']}/extra_specs", json={"extra_specs": {"hw:redirected_usb_ports": 2}})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["extra_specs"] == {"hw:redirected_usb_ports": "2"}


def test_patch_extra_specs_merges_and_null_removes(client, new_flavor):
    flavor = new_flavor(extra_specs={"hw:usb_model": "nec-xhci", "quota:a": "1"})
    r = client.patch(f"/api/flavors/{flavor['id']}/extra_specs",
                     json={"extra_specs": {"quota:a": None, "hw:redirected_usb_ports": "3"}})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["extra_specs"] == {"hw:usb_model": "nec-xhci", "hw:redirected_usb_ports": "3"}


def test_patch_removing_an_unset_key_is_404(client, new_flavor):
    flavor = new_flavor()
    r = client.patch(f"/api/flavors/{flavor['id']}/extra_specs", json={"extra_specs": {"quota:a": None}})
    assert r.status_code == 404
    assert reason_codes(fault_of(r)) == ["SPEC_NOT_SET"]


def test_extra_specs_are_validated_as_a_whole(client, new_flavor):
    """Each key is fine alone; together they are not (no USB controller for the redirection devices)."""
    flavor = new_flavor(extra_specs={"hw:redirected_usb_ports": "2"})
    r = client.patch(f"/api/flavors/{flavor['id']}/extra_specs", json={"extra_specs": {"hw:usb_model": "none"}})
    assert r.status_code == 400
    assert reason_codes(fault_of(r)) == ["SPEC_NEEDS_USB_CONTROLLER"]
    assert client.get(f"/api/flavors/{flavor['id']}").get_json()["extra_specs"] == {"hw:redirected_usb_ports": "2"}


def test_extra_specs_of_unknown_flavor_is_404(client):
    r = client.put("/api/flavors/nope/extra_specs", json={"extra_specs": {}})
    assert r.status_code == 404
    assert reason_codes(fault_of(r)) == ["FLAVOR_NOT_FOUND"]


# ---- VMs from a flavor ---------------------------------------------------------------------------

def _devices(sessions, vm_id):
    with sessions() as s:
        return [(d.type, d.device, d.is_plugged, d.spec_params) for d in devices_dao.list_for_vm(s, vm_id)]


def test_vm_from_flavor_gets_size_devices_and_spice(client, new_flavor, sessions):
    flavor = new_flavor(extra_specs={"hw:usb_model": "qemu-xhci", "usb_redirection_devices": [SPICE, TCP]})
    r = client.post("/api/vms", json={"name": "desk", "flavor_id": flavor["id"]})
    assert r.status_code == 201, r.get_json()
    vm = r.get_json()
    assert (vm["memory_mb"], vm["vcpus"], vm["graphics"], vm["flavor"]) == (512, 2, "spice", flavor["id"])
    assert _devices(sessions, vm["id"]) == [
        ("controller", "usb", True, {"model": "qemu-xhci", "index": 0}),
        ("redirdev", "spicevmc", True, {}),
        ("redirdev", "tcp", True, {"host": "usbhub.example", "port": 4000}),
    ]


def test_vm_from_flavor_keeps_what_the_request_gives(client, new_flavor):
    flavor = new_flavor(extra_specs={"hw:redirected_usb_ports": "1"})
    r = client.post("/api/vms", json={"name": "big", "flavor_id": flavor["id"], "memory_mb": 2048,
                                      "graphics": "spice"})
    assert r.status_code == 201, r.get_json()
    assert (r.get_json()["memory_mb"], r.get_json()["vcpus"]) == (2048, 2)


def test_vm_from_flavor_with_tcp_redirection_only_keeps_no_graphics(client, new_flavor, sessions):
    flavor = new_flavor(extra_specs={"usb_redirection_devices": [TCP]})
    r = client.post("/api/vms", json={"name": "headless", "flavor_id": flavor["id"]})
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["graphics"] == "none"


def test_vm_from_spice_flavor_refuses_other_graphics(client, new_flavor, sessions):
    flavor = new_flavor(extra_specs={"usb_redirection_devices": [SPICE]})
    r = client.post("/api/vms", json={"name": "vnc", "flavor_id": flavor["id"], "graphics": "vnc"})
    assert r.status_code == 409
    assert reason_codes(fault_of(r)) == ["SPICE_REQUIRED"]
    with sessions() as s:
        assert vms_dao.get_by_name(s, "vnc") is None


def test_vm_from_flavor_needs_a_port_per_redirection_device(client, new_flavor):
    flavor = new_flavor(extra_specs={"hw:redirected_usb_ports": "3"})      # pc's piix3-uhci has 2 ports
    r = client.post("/api/vms", json={"name": "short", "flavor_id": flavor["id"]})
    assert r.status_code == 409
    assert reason_codes(fault_of(r)) == ["NO_FREE_USB_PORT"]
    r = client.post("/api/vms", json={"name": "roomy", "flavor_id": flavor["id"], "machine": "q35"})
    assert r.status_code == 201, r.get_json()


def test_vm_from_unknown_flavor_is_refused(client):
    r = client.post("/api/vms", json={"name": "orphan", "flavor_id": "nope"})
    assert r.status_code == 409
    assert reason_codes(fault_of(r)) == ["FLAVOR_NOT_FOUND"]


def test_vm_from_flavor_starts_with_its_devices(client, new_flavor, registered_host, host1):
    flavor = new_flavor(extra_specs={"hw:usb_model": "qemu-xhci", "usb_redirection_devices": [SPICE]})
    vm = client.post("/api/vms", json={"name": "desk", "flavor_id": flavor["id"]}).get_json()
    r = client.post(f"/api/vms/{vm['id']}/start", json={"host_id": registered_host["id"]})
    assert r.status_code == 200, r.get_json()
    sent = host1.sent("VM.create")[-1]["params"]
    assert sent["graphics"] == "spice"
    assert [(d["type"], d["device"]) for d in sent["devices"]] == [("controller", "usb"), ("redirdev", "spicevmc")]
    assert sent["devices"][0]["model"] == "qemu-xhci" and sent["devices"][0]["index"] == 0


def test_removing_a_flavor_leaves_its_vms_alone(client, new_flavor, sessions):
    flavor = new_flavor(extra_specs={"hw:redirected_usb_ports": "1"})
    vm = client.post("/api/vms", json={"name": "kept", "flavor_id": flavor["id"]}).get_json()
    assert client.delete(f"/api/flavors/{flavor['id']}").status_code == 204
    assert client.get(f"/api/vms/{vm['id']}").get_json()["flavor"] == flavor["id"]
    assert len(_devices(sessions, vm["id"])) == 1


# ---- concurrency ---------------------------------------------------------------------------------

@pytest.mark.parametrize("round_", range(3))
def test_concurrent_duplicate_names_one_wins_the_others_get_409(app, monkeypatch, round_):
    """Requests that all find the name free race to insert it, through the app and real sessions:
    the unique constraint lets one win and every other answers 409 NAME_IN_USE, never 500."""
    contenders = 4
    token = issue_token(app.config["sessions"])
    barrier = threading.Barrier(contenders)
    answers: list[object] = [None] * contenders
    real_validate = add_flavor.validate

    def validate_then_wait(params, **kw):
        found = real_validate(params, **kw)
        barrier.wait(timeout=10)       # everyone has found the name free before anyone inserts
        return found

    def create(i: int) -> None:
        try:
            r = authenticated(app.test_client(), token).post("/api/flavors",
                                                             json={"name": "race", "memory_mb": 256, "vcpus": 1})
            answers[i] = (r.status_code, r.get_json())
        except Exception as exc:  # reported by the assertion below
            answers[i] = exc

    monkeypatch.setattr(add_flavor, "validate", validate_then_wait)
    threads = [threading.Thread(target=create, args=(i,)) for i in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    statuses = sorted(a[0] for a in answers if isinstance(a, tuple))
    assert statuses == [201] + [409] * (contenders - 1), answers
    for status, body in answers:
        if status == 409:
            assert [r["code"] for r in body["fault"]["reasons"]] == ["NAME_IN_USE"]
    assert [f["name"] for f in authenticated(app.test_client(), token).get("/api/flavors").get_json()] == ["race"]


def test_usb_devices_given_as_a_list_are_stored_as_json_text_and_mistakes_named(client):
    r = client.post("/api/flavors", json={"name": "m1.key", "memory_mb": 256, "vcpus": 1, "extra_specs": {
        "usb_devices": [{"vendor_id": "0781", "product_id": "5567", "count": 2}]}})
    assert r.status_code == 201, r.get_json()
    assert json.loads(r.get_json()["extra_specs"]["usb_devices"]) == [{"vendor_id": "0781", "product_id": "5567",
                                                                      "count": 2}]
    r = client.post("/api/flavors", json={"name": "m1.bad", "memory_mb": 256, "vcpus": 1, "extra_specs": {
        "usb_devices": [{"id": 0}, {"vendor_id": "0781"}]}})
    assert r.status_code == 400
    assert sorted(x["vars"]["path"] for x in fault_of(r)["reasons"]) == ["usb_devices[0].id",
                                                                        "usb_devices[1].product_id"]
