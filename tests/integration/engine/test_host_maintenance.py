"""A host taken out of service and brought back, over the REST API, with the real agent and libvirtd:
maintenance while a VM runs is refused, no VM starts on a host in maintenance, activate reads the
real agent again, and a removed host's agent can be registered anew."""
from __future__ import annotations

import uuid

from tests.integration.engine.rest import defined_vms, fault, new_vm, ok


def codes(f):
    return [r["code"] for r in f["reasons"]]


def test_maintenance_activate_and_remove_on_the_real_agent(api, host, agent_proc, libvirt_uri):
    vm = new_vm(api, f"maint-{uuid.uuid4().hex[:6]}")
    ok(api.post(f"/api/vms/{vm['id']}/start", json={}))
    f = fault(api.post(f"/api/hosts/{host['id']}/maintenance"), 409)
    assert codes(f) == ["HOST_RUNS_VMS"] and f["reasons"][0]["vars"]["vms"] == [vm["name"]]

    ok(api.post(f"/api/vms/{vm['id']}/stop", json={}))
    assert ok(api.post(f"/api/hosts/{host['id']}/maintenance"))["status"] == "maintenance"
    assert codes(fault(api.post(f"/api/vms/{vm['id']}/start", json={}), 409)) == ["NO_HOST_AVAILABLE"]
    assert codes(fault(api.post(f"/api/vms/{vm['id']}/start", json={"host_id": host["id"]}), 409)) == ["HOST_NOT_UP"]
    assert vm["id"] not in defined_vms(libvirt_uri)         # nothing reached the host
    assert ok(api.post(f"/api/hosts/{host['id']}/refresh"))["status"] == "maintenance"

    activated = ok(api.post(f"/api/hosts/{host['id']}/activate"))
    assert activated["status"] == "up" and activated["last_refresh"] > host["last_refresh"]
    assert ok(api.post(f"/api/vms/{vm['id']}/start", json={}))["status"] == "up"
    ok(api.post(f"/api/vms/{vm['id']}/stop", json={}))

    ok(api.post(f"/api/hosts/{host['id']}/maintenance"))
    assert api.delete(f"/api/hosts/{host['id']}").status_code == 204
    assert ok(api.get("/api/hosts")) == []
    assert codes(fault(api.post(f"/api/vms/{vm['id']}/start", json={}), 409)) == ["NO_HOST_AVAILABLE"]
    again = ok(api.post("/api/hosts", json={"name": "lab", "url": agent_proc.url}), 201)   # its agent is free again
    assert again["id"] != host["id"] and again["status"] == "up"
    assert ok(api.post(f"/api/vms/{vm['id']}/start", json={}))["status"] == "up"
    ok(api.post(f"/api/vms/{vm['id']}/stop", json={}))
    assert api.delete(f"/api/vms/{vm['id']}").status_code == 204
