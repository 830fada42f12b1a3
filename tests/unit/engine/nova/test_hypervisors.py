"""os-hypervisors/{hostname} with seed 001's usb_device_stats, and the native host inventory."""
from __future__ import annotations

import json

import pytest

from tests.unit.engine.nova.conftest import TENANT, nova_fault
from tests.unit.engine.tokens import authenticated, issue_token

KEY = {"name": "usb_2_3", "capability": "usb_device", "vendorId": "8086", "productId": "1520", "bus": 2,
       "device": 3, "portPath": "2-1", "serial": "S1", "productName": "Key", "allowed": True}
PCI = {"name": "pci_0000_01_00_0", "capability": "pci", "vendorId": "8086", "productId": "10d3",
       "pciAddress": "0000:01:00.0", "iommuGroup": 7, "allowed": True}
SEED_KEYS = {"id", "compute_node_id", "address", "product_id", "vendor_id", "bus_id", "device_id", "port_id",
             "status", "extra_info", "instance_uuid"}


@pytest.fixture
def inventoried(host1, client):
    host1.hostdevs[:] = [dict(KEY), dict(PCI)]
    r = client.post("/api/hosts", json={"name": "host1", "url": "http://127.0.0.1:54321/jsonrpc"})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


@pytest.mark.parametrize("prefix", [f"/v2/{TENANT}", f"/v2.1/{TENANT}", "/v3"])
def test_usb_device_stats_as_seed_001_shows_them(client, inventoried, prefix):
    r = client.get(f"{prefix}/os-hypervisors/host1")
    assert r.status_code == 200, r.get_json()
    hyper = r.get_json()["hypervisor"]
    assert hyper["hypervisor_hostname"] == "host1"
    (stat,) = hyper["usb_device_stats"]                  # USB devices only
    assert set(stat) == SEED_KEYS
    assert isinstance(stat["id"], int)
    assert {k: stat[k] for k in SEED_KEYS - {"id", "compute_node_id", "extra_info"}} == {
        "address": "usb_2_3", "product_id": "1520", "vendor_id": "8086", "bus_id": "2", "device_id": "3",
        "port_id": "2-1", "status": "available", "instance_uuid": ""}
    assert json.loads(stat["extra_info"]) == {"product_name": "Key", "serial": "S1"}
    assert stat["compute_node_id"] == inventoried["id"]


def test_unknown_hypervisor_is_item_not_found(client, inventoried):
    nova_fault(client.get(f"/v2.1/{TENANT}/os-hypervisors/nope"), "itemNotFound", 404)


def test_hypervisors_are_for_admins(app, sessions, inventoried):
    member = authenticated(app.test_client(), issue_token(sessions, "m", "member", project=TENANT))
    nova_fault(member.get(f"/v2.1/{TENANT}/os-hypervisors/host1"), "forbidden", 403)


def test_the_native_inventory_filters_by_capability_and_status(app, sessions, client, inventoried):
    r = client.get(f"/api/hosts/{inventoried['id']}/devices")
    assert r.status_code == 200 and {d["capability"] for d in r.get_json()} == {"usb_device", "pci"}
    r = client.get(f"/api/hosts/{inventoried['id']}/devices?capability=pci")
    (pci,) = r.get_json()
    assert (pci["pci_address"], pci["iommu_group"], pci["status"], pci["present"]) == ("0000:01:00.0", 7,
                                                                                       "available", True)
    assert client.get(f"/api/hosts/{inventoried['id']}/devices?status=removed").get_json() == []
    assert client.get(f"/api/hosts/{inventoried['id']}/devices?status=gone").status_code == 400
    assert client.get("/api/hosts/nope/devices").status_code == 404
    member = authenticated(app.test_client(), issue_token(sessions, "m", "member", project=TENANT))
    assert member.get(f"/api/hosts/{inventoried['id']}/devices").status_code == 403


def test_attach_and_detach_usb_devices_as_seed_001_asks(client, inventoried, nova_server, host1):
    server = nova_server("usb-user")
    dev_id = client.get(f"/v2.1/{TENANT}/os-hypervisors/host1").get_json()["hypervisor"]["usb_device_stats"][0]["id"]
    url = f"/v2/{TENANT}/servers/{server['id']}/action"
    r = client.post(url, json={"attach_usb_devices": {"usb_devices_requests": [{"id": dev_id}]}})
    assert r.status_code == 202, r.get_json()
    (stat,) = client.get("/v3/os-hypervisors/host1").get_json()["hypervisor"]["usb_device_stats"]
    assert (stat["status"], stat["instance_uuid"]) == ("allocated", server["id"])
    again = client.post(url, json={"attach_usb_devices": {"usb_devices_requests": [{"id": dev_id}]}})
    assert again.status_code == 409, again.get_json()                       # one VM per device
    r = client.post(f"/v3/servers/{server['id']}/action",
                    json={"detach_usb_devices": {"usb_devices_requests": [{"id": dev_id}]}})
    assert r.status_code == 202, r.get_json()
    (stat,) = client.get("/v3/os-hypervisors/host1").get_json()["hypervisor"]["usb_device_stats"]
    assert (stat["status"], stat["instance_uuid"]) == ("available", "")


@pytest.mark.parametrize("body", [{"attach_usb_devices": {}}, {"attach_usb_devices": {"usb_devices_requests": []}},
                                  {"attach_usb_devices": {"usb_devices_requests": [{"id": "x"}]}},
                                  {"detach_usb_devices": {"usb_devices_requests": [{"idx": 1}]}}])
def test_malformed_usb_device_requests_are_bad_requests(client, inventoried, nova_server, body):
    server = nova_server("usb-user")
    nova_fault(client.post(f"/v2.1/{TENANT}/servers/{server['id']}/action", json=body), "badRequest", 400)


def test_a_host_in_maintenance_is_a_disabled_hypervisor(client, inventoried):
    hyper = client.get(f"/v2.1/{TENANT}/os-hypervisors/host1").get_json()["hypervisor"]
    assert (hyper["state"], hyper["status"]) == ("up", "enabled")
    assert client.post(f"/api/hosts/{inventoried['id']}/maintenance").status_code == 200
    hyper = client.get(f"/v2.1/{TENANT}/os-hypervisors/host1").get_json()["hypervisor"]
    assert (hyper["state"], hyper["status"]) == ("down", "disabled")
