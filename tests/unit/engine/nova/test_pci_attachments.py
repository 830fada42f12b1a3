"""Seed 003's os-pci_attachments through the facade (v2, v2.1, v3): the bodies key for key as the seed
shows them, 200 on v2 and 202 on v3 for a delete, all or nothing across aliases, Nova's faults; and
os-hypervisors' pci_device_stats in the shape of the seed's pci_devices table."""
from __future__ import annotations

import json

import pytest

from engine.dao import pci_aliases
from engine.pci_aliases import Alias
from tests.unit.engine.fakehost import error_code
from tests.unit.engine.nova.conftest import TENANT, V21, nova_fault
from tests.unit.engine.tokens import authenticated, issue_token

# The seed's bodies (seed 003, "The Hotplug APIs Based on Current Implementation"), as it prints them.
SEED_REQUEST = {"pciAttachment": {"pci_passthrough:alias": "a1:2"}}
SEED_CREATED = {"pci_devices": [
    {"attachment_id": "a26887c6-c47b-4654-abb5-dfadf7d3f803", "serverId": "4d8c3732-a248-40ed-bebc-539a6ffd25c0",
     "dev_id": "pci_0000_02_00_0", "address": "0000:02:00.0", "inner_address": "0000:03:00.0", "vendor_id": "8086",
     "product_id": "10c9"},
    {"attachment_id": "a26887c6-c47b-4654-abb5-dfadf7d3f704", "serverId": "4d8c3732-a248-40ed-bebc-539a6ffd25c0",
     "dev_id": "pci_0000_02_00_1", "address": "0000:02:00.1", "inner_address": "0000:03:01.0", "vendor_id": "8086",
     "product_id": "10c9"}]}
SEED_LISTED = {"pciAttachment": SEED_CREATED["pci_devices"]}
# The seed's pci_devices table, less Nova's bookkeeping columns (created_at .. deleted).
SEED_PCI_DEVICE = {"id": 1, "compute_node_id": 1, "address": "0000:02:00.0", "product_id": "10c9", "vendor_id": "8086",
                   "dev_type": "type-PCI", "dev_id": "pci_0000_02_00_0", "label": "label_8086_10c9",
                   "status": "allocated", "extra_info": "{}",
                   "instance_uuid": "294c0426-693a-4514-907e-3eb17dc1de1c"}

IDS = ("8086", "10c9")
I350 = ("8086", "1521")
MOUNTS = {"v2": f"/v2/{TENANT}", "v2.1": V21, "v3": "/v3"}


def fn(address: str, ids=IDS, group: int | None = None) -> dict:
    domain, bus, rest = address.split(":")
    slot, function = rest.split(".")
    return {"name": f"pci_{domain}_{bus}_{slot}_{function}", "capability": "pci", "vendorId": ids[0],
            "productId": ids[1], "pciAddress": address, "iommuGroup": group, "driver": "igb", "allowed": True}


@pytest.fixture
def seed_host(host1, sessions):
    """host1 with the seed's four functions (registered below, so its inventory is read); aliases a1
    (the seed's 8086:10c9) and b1 (an I350, which host1 lacks)."""
    host1.hostdevs[:] = [fn("0000:02:00.0", group=1), fn("0000:02:00.1", group=2), fn("0000:03:00.0", group=3),
                         fn("0000:03:00.1", group=4)]
    with sessions.begin() as s:
        pci_aliases.replace_all(s, [Alias("a1", *IDS), Alias("b1", *I350)])
    return host1


@pytest.fixture
def server(seed_host, registered_host, client, nova_server):
    """A server of tenant t1, started (os-start) on host1."""
    created = nova_server("s1")
    r = client.post(f"{V21}/servers/{created['id']}/action", json={"os-start": None})
    assert r.status_code == 202, r.get_json()
    return created


def url(mount: str, server_id: str, *rest: str) -> str:
    return "/".join([MOUNTS[mount], "servers", server_id, "os-pci_attachments", *rest])


def test_create_and_list_answer_the_seeds_bodies_key_for_key(client, server):
    r = client.post(url("v2", server["id"]), json=SEED_REQUEST)
    assert r.status_code == 200, r.get_json()
    created = r.get_json()
    assert list(created) == list(SEED_CREATED)
    assert [list(d) for d in created["pci_devices"]] == [list(d) for d in SEED_CREATED["pci_devices"]]
    assert [(d["serverId"], d["dev_id"], d["address"], d["vendor_id"], d["product_id"])
            for d in created["pci_devices"]] == [(server["id"], "pci_0000_02_00_0", "0000:02:00.0", *IDS),
                                                 (server["id"], "pci_0000_02_00_1", "0000:02:00.1", *IDS)]
    assert all(d["inner_address"].startswith("0000:00:") for d in created["pci_devices"])
    for mount in MOUNTS:
        r = client.get(url(mount, server["id"]))
        assert r.status_code == 200 and list(r.get_json()) == list(SEED_LISTED)
        assert r.get_json()["pciAttachment"] == created["pci_devices"]


@pytest.mark.parametrize("mount, status", [("v2", 200), ("v2.1", 200), ("v3", 202)])
def test_delete_is_200_on_v2_and_202_on_v3_with_no_body(client, server, mount, status):
    (made,) = client.post(url(mount, server["id"]), json={"pciAttachment": {"pci_passthrough:alias": "a1"}}
                          ).get_json()["pci_devices"]
    r = client.delete(url(mount, server["id"], made["attachment_id"]))
    assert r.status_code == status and r.get_data() == b""
    assert client.get(url(mount, server["id"])).get_json() == {"pciAttachment": []}


def test_several_aliases_are_all_or_nothing(client, server, host1):
    r = client.post(url("v2.1", server["id"]), json={"pciAttachment": {"pci_passthrough:alias": "a1:1,b1:1"}})
    assert "b1" in nova_fault(r, "conflictingRequest", 409)
    assert host1.sent("VM.hotplugHostdev") == []
    plug = host1._VM_hotplugHostdev

    def second_fails(params):
        if len(host1.sent("VM.hotplugHostdev")) > 1:
            raise host1._error(error_code("hostdevPlugFailed"), "unable to reset the device")
        return plug(params)
    host1._VM_hotplugHostdev = second_fails
    r = client.post(url("v2.1", server["id"]), json={"pciAttachment": {"pci_passthrough:alias": "a1:2"}})
    assert "unable to reset the device" in nova_fault(r, "computeFault", 502)      # the host's refusal
    assert client.get(url("v2.1", server["id"])).get_json() == {"pciAttachment": []}
    assert [d for d in host1.domain(server["id"]).devices if d.get("type") == "hostdev"] == []


@pytest.mark.parametrize("body", [
    {}, {"pciAttachment": {}}, {"pciAttachment": {"pci_passthrough:alias": 2}},
    {"pciAttachment": {"pci_passthrough:alias": "a1:0"}}, {"pciAttachment": {"pci_passthrough:alias": "a1:2,"}},
    {"pciAttachment": {"pci_passthrough:alias": "a1:1", "other": 1}}, {"pciAttachment": "a1:1"},
])
def test_a_malformed_body_is_bad_request(client, server, body):
    nova_fault(client.post(url("v2", server["id"]), json=body), "badRequest", 400)


def test_unknown_attachment_and_another_tenants_server_are_item_not_found(app, sessions, client, server):
    nova_fault(client.delete(url("v2", server["id"], "nope")), "itemNotFound", 404)
    other = authenticated(app.test_client(), issue_token(sessions, "o", "member", "other"))
    nova_fault(other.get(f"/v2/other/servers/{server['id']}/os-pci_attachments"), "itemNotFound", 404)
    nova_fault(other.post(f"/v2/other/servers/{server['id']}/os-pci_attachments", json=SEED_REQUEST),
               "itemNotFound", 404)


def test_a_member_of_the_tenant_attaches_and_detaches(app, sessions, server):
    member = authenticated(app.test_client(), issue_token(sessions, "m", "member", TENANT))
    r = member.post(url("v2", server["id"]), json={"pciAttachment": {"pci_passthrough:alias": "a1:1"}})
    assert r.status_code == 200, r.get_json()
    (made,) = r.get_json()["pci_devices"]
    assert member.delete(url("v3", server["id"], made["attachment_id"])).status_code == 202


def test_hypervisor_pci_device_stats_as_the_seeds_pci_devices_table(client, server, registered_host):
    client.post(url("v2", server["id"]), json=SEED_REQUEST)
    hyper = client.get(f"/v2/{TENANT}/os-hypervisors/host1").get_json()["hypervisor"]
    stats = hyper["pci_device_stats"]
    assert [list(s) for s in stats] == [list(SEED_PCI_DEVICE)] * 4
    assert hyper["usb_device_stats"] == []
    first = stats[0]
    assert isinstance(first["id"], int) and first["compute_node_id"] == registered_host["id"]
    assert {k: first[k] for k in SEED_PCI_DEVICE if k not in ("id", "compute_node_id", "extra_info")} == {
        **{k: SEED_PCI_DEVICE[k] for k in ("address", "product_id", "vendor_id", "dev_type", "dev_id", "label",
                                           "status")}, "instance_uuid": server["id"]}
    assert json.loads(first["extra_info"]) == {"iommu_group": 1, "driver": "igb"}
    assert [(s["address"], s["status"], s["instance_uuid"]) for s in stats[2:]] == [
        ("0000:03:00.0", "available", None), ("0000:03:00.1", "available", None)]
