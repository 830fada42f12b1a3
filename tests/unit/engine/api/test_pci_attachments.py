"""/api/vms/{vm_id}/pci_attachments and /api/pci_aliases through the REST API, and a VM's free PCIe ports."""
from __future__ import annotations

import pytest

from engine.dao import pci_aliases
from engine.pci_aliases import Alias
from tests.unit.engine.api.conftest import fault_of, reason_codes
from tests.unit.engine.tokens import authenticated, issue_token

E1000E = ("8086", "10d3")
KEYS = {"attachment_id", "vm_id", "dev_id", "address", "inner_address", "vendor_id", "product_id", "alias", "origin",
        "host", "status", "last_error"}


def fn(address: str, group: int) -> dict:
    domain, bus, rest = address.split(":")
    slot, function = rest.split(".")
    return {"name": f"pci_{domain}_{bus}_{slot}_{function}", "capability": "pci", "vendorId": E1000E[0],
            "productId": E1000E[1], "pciAddress": address, "iommuGroup": group, "driver": "e1000e", "allowed": True}


@pytest.fixture
def nics_of_host1(host1, sessions):
    """host1 reports two e1000e functions (found when it is registered); alias a1 names them."""
    host1.hostdevs[:] = [fn("0000:02:00.0", 1), fn("0000:02:00.1", 2)]
    with sessions.begin() as s:
        pci_aliases.replace_all(s, [Alias("a1", *E1000E)])


@pytest.fixture
def vm_up(nics_of_host1, running_vm):
    return running_vm


def test_the_configured_aliases_are_for_admins(app, client, sessions, nics_of_host1):
    r = client.get("/api/pci_aliases")
    assert r.status_code == 200 and r.get_json() == [{"name": "a1", "vendor_id": "8086", "product_id": "10d3"}]
    member = authenticated(app.test_client(), issue_token(sessions, "m", "member", "p1"))
    r = member.get("/api/pci_aliases")
    assert r.status_code == 403 and reason_codes(fault_of(r)) == ["ADMIN_REQUIRED"]


def test_attach_list_and_detach_on_a_running_vm(client, vm_up, registered_host):
    url = f"/api/vms/{vm_up['id']}/pci_attachments"
    r = client.post(url, json={"alias": "a1", "count": 2})
    assert r.status_code == 201, r.get_json()
    made = r.get_json()
    assert [set(a) for a in made] == [KEYS, KEYS]
    first = made[0]
    assert {k: first[k] for k in KEYS - {"attachment_id", "inner_address"}} == {
        "vm_id": vm_up["id"], "dev_id": "pci_0000_02_00_0", "address": "0000:02:00.0", "vendor_id": "8086",
        "product_id": "10d3", "alias": "a1", "origin": "attachment", "host": "host1", "status": "attached",
        "last_error": None}
    assert first["inner_address"] and first["inner_address"].startswith("0000:00:")
    assert client.get(url).get_json() == made
    r = client.delete(f"{url}/{first['attachment_id']}")
    assert r.status_code == 204, r.get_json()
    assert [a["attachment_id"] for a in client.get(url).get_json()] == [made[1]["attachment_id"]]
    devices = client.get(f"/api/hosts/{registered_host['id']}/devices?capability=pci").get_json()
    assert {d["pci_address"]: d["status"] for d in devices} == {"0000:02:00.0": "available",
                                                               "0000:02:00.1": "allocated"}


def test_a_detach_the_guest_is_slow_with_answers_202(client, vm_up, host1):
    url = f"/api/vms/{vm_up['id']}/pci_attachments"
    (made,) = client.post(url, json={"alias": "a1"}).get_json()
    host1.pending_unplug = True
    r = client.delete(f"{url}/{made['attachment_id']}")
    assert r.status_code == 202 and r.get_json()["status"] == "detaching"
    assert r.get_json()["inner_address"] == made["inner_address"]      # still in the guest


def test_a_stopped_vms_attachments_are_its_definition(client, nics_of_host1, registered_host, new_vm, host1):
    vm = new_vm("stopped")
    r = client.post(f"/api/vms/{vm['id']}/pci_attachments", json={"alias": "a1"})
    assert r.status_code == 201, r.get_json()
    (made,) = r.get_json()
    assert (made["status"], made["inner_address"], made["host"]) == ("attached", None, "host1")
    assert host1.sent("VM.hotplugHostdev") == []
    assert client.delete(f"/api/vms/{vm['id']}/pci_attachments/{made['attachment_id']}").status_code == 204


@pytest.mark.parametrize("body, status, code", [
    ({"alias": "a1", "count": "2"}, 400, "BAD_REQUEST"),
    ({"count": 1}, 400, "BAD_REQUEST"),
    ({"alias": "a1", "extra": 1}, 400, "BAD_REQUEST"),
    ({"alias": "zz"}, 409, "PCI_ALIAS_UNKNOWN"),
    ({"alias": "a1", "count": 3}, 409, "PCI_DEVICES_SHORT"),
    ({"alias": "a1", "count": 17}, 409, "PCI_REQUEST_INVALID"),
])
def test_bad_requests_and_refusals(client, vm_up, body, status, code):
    r = client.post(f"/api/vms/{vm_up['id']}/pci_attachments", json=body)
    assert r.status_code == status, r.get_json()
    fault = fault_of(r)
    assert fault["code"] == code or code in reason_codes(fault)


def test_unknown_attachment_is_404(client, vm_up):
    r = client.delete(f"/api/vms/{vm_up['id']}/pci_attachments/nope")
    assert r.status_code == 404 and reason_codes(fault_of(r)) == ["PCI_ATTACHMENT_NOT_FOUND"]


def test_a_member_attaches_on_its_own_vm(app, sessions, nics_of_host1, registered_host):
    member = authenticated(app.test_client(), issue_token(sessions, "m", "member", "mine"))
    vm = member.post("/api/vms", json={"name": "own"}).get_json()
    assert member.post(f"/api/vms/{vm['id']}/start", json={"host_id": registered_host["id"]}).status_code == 200
    r = member.post(f"/api/vms/{vm['id']}/pci_attachments", json={"alias": "a1"})
    assert r.status_code == 201, r.get_json()
    assert len(member.get(f"/api/vms/{vm['id']}/pci_attachments").get_json()) == 1


def test_a_vm_shows_its_free_pcie_ports_while_it_runs_on_q35(app, client, nics_of_host1, registered_host, new_vm):
    app.config["pcie_ports"] = 2
    q35, pc = new_vm("q35", machine="q35"), new_vm("pc")
    assert client.get(f"/api/vms/{q35['id']}").get_json()["pcie_ports_free"] is None
    for vm in (q35, pc):
        r = client.post(f"/api/vms/{vm['id']}/start", json={"host_id": registered_host["id"]})
        assert r.status_code == 200, r.get_json()
    assert r.get_json()["pcie_ports_free"] is None                  # pc: no root ports
    assert client.get(f"/api/vms/{q35['id']}").get_json()["pcie_ports_free"] == 2
    assert client.post(f"/api/vms/{q35['id']}/pci_attachments", json={"alias": "a1"}).status_code == 201
    assert client.get(f"/api/vms/{q35['id']}").get_json()["pcie_ports_free"] == 1
    r = client.post(f"/api/vms/{q35['id']}/pci_attachments", json={"alias": "a1", "count": 2})
    assert r.status_code == 409 and "NO_FREE_PCIE_PORT" in reason_codes(fault_of(r))
