"""Names, ids and keys taken from outside are matched as whole strings: a control character, a NUL
(which PostgreSQL cannot store) or a final newline (which Python's `$` lets through) is refused with
the field's own reason, the same on SQLite and PostgreSQL, before anything is looked up or written."""
from __future__ import annotations

import pytest

from engine.commands import add_project
from engine.errors import ValidationFailed
from tests.unit.engine.api.conftest import fault_of, reason_codes

# A final newline, a NUL, other C0 and C1 controls, DEL, and blanks around the name.
BAD_NAMES = ["nic1\n", "n\x00x", "n\x01x", "n\x7fx", "n\u0085x", " nic1", "nic1 ", "nic1\t"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_nic_name_that_is_not_printable_is_refused_and_nothing_is_added(client, new_vm, name):
    vm = new_vm()
    fault = fault_of(client.post(f"/api/vms/{vm['id']}/nics", json={"name": name, "network": "ovirtmgmt"}))
    assert fault["status"] == 409 and reason_codes(fault) == ["NAME_INVALID"]
    assert fault["reasons"][0]["vars"] == {"kind": "NIC", "name": name}
    assert client.get(f"/api/vms/{vm['id']}/nics").get_json() == []


def test_names_with_inner_blanks_and_letters_of_any_script_are_kept(client, new_vm):
    vm = new_vm()
    for name in ("LAN 1", "réseau-ü", "網路"):
        r = client.post(f"/api/vms/{vm['id']}/nics", json={"name": name, "network": "ovirtmgmt"})
        assert r.status_code == 201, r.get_json()
        assert r.get_json()["name"] == name


@pytest.mark.parametrize("name", ["nic2\n", "n\x00x"])
def test_renaming_a_nic_to_a_name_that_is_not_printable_is_refused(client, new_vm, name):
    vm = new_vm()
    nic = client.post(f"/api/vms/{vm['id']}/nics", json={"name": "nic1", "network": "ovirtmgmt"}).get_json()
    fault = fault_of(client.patch(f"/api/vms/{vm['id']}/nics/{nic['id']}", json={"name": name}))
    assert fault["status"] == 409 and reason_codes(fault) == ["NAME_INVALID"]
    assert client.get(f"/api/vms/{vm['id']}/nics/{nic['id']}").get_json()["name"] == "nic1"


@pytest.mark.parametrize("name", ["c1\n", "c\x00"])
def test_a_cluster_name_that_is_not_printable_is_refused(client, name):
    fault = fault_of(client.post("/api/clusters", json={"name": name}))
    assert fault["status"] == 409 and reason_codes(fault) == ["NAME_INVALID"]
    assert name not in [c["name"] for c in client.get("/api/clusters").get_json()]


@pytest.mark.parametrize("version", ["4.7\n", "\u0664.\u0667", " 4.7"])
def test_a_compatibility_version_is_ascii_digits_and_nothing_around_them(client, version):
    r = client.post("/api/clusters", json={"name": "c1", "compat_version": version})
    assert r.status_code == 400
    assert fault_of(r)["reasons"][0]["vars"]["field"] == "compat_version"


def test_a_host_name_with_a_final_newline_is_refused_before_the_host_is_called(client, fake_hosts):
    fault = fault_of(client.post("/api/hosts", json={"name": "host1\n", "url": "http://127.0.0.1:9/jsonrpc"}))
    assert fault["status"] == 409 and reason_codes(fault) == ["NAME_INVALID"]
    assert client.get("/api/hosts").get_json() == []


@pytest.mark.parametrize("field, value, reason", [("name", "small\n", "NAME_INVALID"),
                                                  ("name", "sm\x00all", "NAME_INVALID"),
                                                  ("id", "small\n", "FIELD_INVALID"),
                                                  ("id", "sm\x00all", "FIELD_INVALID")])
def test_a_flavor_name_or_id_that_is_not_whole_is_refused(client, field, value, reason):
    body = {"name": "small", "memory_mb": 512, "vcpus": 1, field: value}
    fault = fault_of(client.post("/api/flavors", json=body))
    assert fault["status"] in (400, 409) and reason_codes(fault) == [reason]
    assert client.get("/api/flavors").get_json() == []


@pytest.mark.parametrize("key", ["mtu\n", "LD_PRELOAD", "PYTHONPATH", "vmId"])
def test_a_custom_property_the_agent_refuses_is_refused_when_the_vm_is_created(client, key):
    """A final newline, or a name the hooks' environment may not take (the contract's propertyName):
    else the VM would exist and never start."""
    fault = fault_of(client.post("/api/vms", json={"name": "vm1", "custom_properties": {key: "9000"}}))
    assert fault["status"] == 409 and "FIELD_INVALID" in reason_codes(fault)
    assert client.get("/api/vms").get_json() == []


def test_a_mac_with_a_final_newline_is_not_a_mac(client, new_vm):
    vm = new_vm()
    r = client.post(f"/api/vms/{vm['id']}/nics", json={"name": "nic1", "network": "ovirtmgmt",
                                                        "mac": "56:6f:1a:00:00:09\n"})
    assert r.status_code == 400
    assert fault_of(r)["reasons"][0]["vars"]["field"] == "mac"


@pytest.mark.parametrize("project", ["acme\n", "ac\x00me"])
def test_a_project_id_that_is_not_whole_is_refused(sessions, project):
    with pytest.raises(ValidationFailed) as err:
        add_project.execute(sessions, None, add_project.Params(project_id=project))
    assert [r.code for r in err.value.reasons] == ["NAME_INVALID"]


def test_a_refusal_is_audited_on_one_line_with_its_control_characters_escaped(client, new_vm):
    vm = new_vm()
    client.post(f"/api/vms/{vm['id']}/nics", json={"name": "n\x00x\n2026 VM_REMOVED", "network": "ovirtmgmt"})
    refused = client.get(f"/api/events?vm_id={vm['id']}&code=NIC_ADD_REFUSED").get_json()
    assert [e["message"] for e in refused] == ["Cannot add NIC n\\x00x\\n2026 VM_REMOVED to VM vm1."]
    assert refused[0]["vars"]["reasons"][0]["vars"]["name"] == "n\\x00x\\n2026 VM_REMOVED"
