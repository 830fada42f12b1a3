"""The one fault handler: malformed input is a 4xx fault, the unexpected a bare 500, and the fault
shape can be swapped per blueprint."""
from __future__ import annotations

import logging

import pytest

from engine.dao import vms as vms_dao
from engine.errors import HostCallFailed, Reason, ValidationFailed
from engine import faults
from engine.app import create_app
from tests.unit.engine.api.conftest import fault_of
from tests.unit.engine.tokens import admin_client


def test_malformed_json_is_400(client):
    r = client.post("/api/vms", data="{not json", content_type="application/json")
    assert r.status_code == 400
    fault = fault_of(r)
    assert fault["code"] == "MALFORMED_JSON"


def test_invalid_utf8_is_400(client):
    r = client.post("/api/vms", data=b'{"name": "\xff\xfe"}', content_type="application/json")
    assert r.status_code == 400
    assert fault_of(r)["code"] == "MALFORMED_JSON"


@pytest.mark.parametrize("body", ["[1, 2]", '"vm"', "42", "null"])
def test_json_that_is_not_an_object_is_400(client, body):
    r = client.post("/api/vms", data=body, content_type="application/json")
    assert r.status_code == 400
    assert fault_of(r)["code"] in ("BAD_REQUEST", "MALFORMED_JSON")


def test_wrong_content_type_is_415(client):
    r = client.post("/api/vms", data="name=vm1", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 415
    assert fault_of(r)["code"] == "UNSUPPORTED_MEDIA_TYPE"
    r = client.post("/api/vms", data='{"name": "vm1"}', content_type="text/plain")
    assert r.status_code == 415
    assert client.get("/api/vms").get_json() == []


def test_unknown_route_is_404(client):
    r = client.get("/api/no/such/thing")
    assert r.status_code == 404
    assert fault_of(r)["code"] == "NOT_FOUND"


def test_method_not_allowed_is_405(client):
    r = client.put("/api/vms", json={})
    assert r.status_code == 405
    assert fault_of(r)["code"] == "METHOD_NOT_ALLOWED"
    assert "GET" in r.headers["Allow"]


def test_unexpected_error_is_500_without_details(client, monkeypatch, caplog):
    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(vms_dao, "list", explode)
    with caplog.at_level(logging.ERROR, logger="engine.faults"):
        r = client.get("/api/vms")
    assert r.status_code == 500
    fault = fault_of(r)
    assert fault["code"] == "INTERNAL_ERROR"
    assert "secret" not in r.get_data(as_text=True)
    assert "secret internals" in caplog.text  # logged with its stack, not answered


def test_engine_error_mapping():
    err = HostCallFailed("Host host1 answered error 49", host_code=49, host_message="Failed to hotplug NIC",
                         host="host1")
    fault = faults.fault_for(err)
    assert (fault.status, fault.code) == (502, "HOST_ERROR")
    assert faults.native_shape(fault) == {"fault": {
        "code": "HOST_ERROR", "status": 502, "message": "Host host1 answered error 49", "reasons": [],
        "host": {"name": "host1", "code": 49, "message": "Failed to hotplug NIC"}}}

    refused = ValidationFailed("no", reasons=[Reason("A", "a"), Reason("B", "b", {"x": 1})])
    body = faults.native_shape(faults.fault_for(refused))["fault"]
    assert body["status"] == 409 and "host" not in body
    assert body["reasons"] == [{"code": "A", "message": "a", "vars": {}},
                               {"code": "B", "message": "b", "vars": {"x": 1}}]


def test_nested_field_errors_name_their_path(client):
    r = client.post("/api/vms", json={"name": "v", "boot": {"kernel": 1, "extra": "x"}})
    assert r.status_code == 400
    fields = {reason["vars"]["field"] for reason in fault_of(r)["reasons"]}
    assert fields == {"boot.kernel", "boot.extra"}


def test_a_blueprint_can_answer_in_another_shape(sessions, fake_hosts):
    app = create_app({"sessions": sessions, "hosts": fake_hosts, "TESTING": True})
    faults.register_shape(app, "vms", lambda f: {"itemNotFound": {"code": f.status, "message": f.message}})
    client = admin_client(app)
    r = client.get("/api/vms/nope")
    assert r.status_code == 404
    assert r.get_json() == {"itemNotFound": {"code": 404, "message": "VM nope does not exist."}}
    # other blueprints keep the native shape
    assert "fault" in client.get("/api/clusters/nope").get_json()


def test_create_app_needs_sessions_and_hosts():
    with pytest.raises(ValueError):
        create_app({})


# Found by tests/fuzz/test_api.py on PostgreSQL, which refuses these values where SQLite stores them.
@pytest.mark.parametrize("method,path,body", [
    ("get", "/api/vms/a%00b", None),
    ("get", "/api/clusters/a%00b", None),
    ("get", "/api/flavors/a%00b", None),
    ("get", "/api/events?vm_id=a%00b", None),
    ("post", "/api/vms", {"name": "a\x00b", "os_type": "rhel_9x64"}),
    ("post", "/api/vms", {"name": "vm1", "cluster_id": "a\x00b"}),
    ("post", "/api/flavors", {"name": "a\x00b", "memory_mb": 512, "vcpus": 1}),
])
def test_a_nul_character_is_never_a_500(client, method, path, body):
    r = client.open(path, method=method.upper(), json=body)
    assert r.status_code < 500, r.get_data(as_text=True)
    if r.status_code >= 400:
        assert fault_of(r)["code"]


@pytest.mark.parametrize("path", ["/api/events?after=2147483648", "/api/events?after=9223372036854775807"])
def test_an_id_beyond_the_integer_column_is_400(client, path):
    r = client.get(path)
    assert r.status_code == 400
    assert fault_of(r)["reasons"][0]["vars"]["field"] == "after"


def test_a_host_device_id_beyond_the_integer_column_is_400(client, new_vm):
    vm = new_vm()
    r = client.post(f"/api/vms/{vm['id']}/hostdevs", json={"host_device_id": 2**31})
    assert r.status_code == 400
    assert fault_of(r)["reasons"][0]["vars"]["field"] == "host_device_id"


def test_a_compat_version_longer_than_its_column_is_400(client):
    r = client.post("/api/clusters", json={"name": "c1", "compat_version": "6010550179090.717"})
    assert r.status_code == 400
    assert fault_of(r)["reasons"][0]["vars"]["field"] == "compat_version"


def test_a_value_the_database_refuses_is_400():
    from sqlalchemy.exc import DataError

    refused = DataError("INSERT ...", {}, Exception("PostgreSQL text fields cannot contain NUL (0x00) bytes"))
    fault = faults.fault_for(refused)
    assert (fault.status, fault.code, [r.code for r in fault.reasons]) == (400, "BAD_REQUEST", ["INVALID_VALUE"])
