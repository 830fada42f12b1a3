"""oVirt's Hot Plug NIC flows over HTTP, end to end: the engine's REST API, its database and monitor,
a real agent process, libvirtd and a booted guest that sees its NICs come and go."""
from __future__ import annotations

import uuid

import libvirt
import pytest

from tests.integration.engine.rest import add_nic, die_after_host_call, fault, live_aliases, new_vm, ok
from tests.integration.guest import guest_nets, wait_for_serial


@pytest.fixture(scope="module")
def running(api, host, guest, tmp_path_factory, agent_proc):
    """A VM with two NICs, the second inactive, started and booted."""
    serial = tmp_path_factory.mktemp("guest") / "console.log"
    vm = new_vm(api, f"flows-{uuid.uuid4().hex[:6]}", guest, serial)
    nic1, nic2 = add_nic(api, vm, "nic1"), add_nic(api, vm, "nic2", active=False)
    assert (nic1["plugged"], nic2["plugged"]) == (True, False)
    vm = ok(api.post(f"/api/vms/{vm['id']}/start", json={}))
    assert vm["status"] == "up"
    wait_for_serial(serial, "PLUGBOARD-GUEST-READY", timeout=90)
    yield {"vm": vm, "nic1": nic1, "nic2": nic2, "serial": serial}
    api.post(f"/api/vms/{vm['id']}/stop", json={})


def nic_url(ctx, nic):
    return f"/api/vms/{ctx['vm']['id']}/nics/{ctx[nic]['id']}"


def test_only_active_nics_are_started(running, agent_proc, api):
    aliases = live_aliases(agent_proc, running["vm"]["id"])
    assert running["nic1"]["alias"] in aliases and running["nic2"]["alias"] not in aliases
    nic1 = ok(api.get(nic_url(running, "nic1")))
    assert nic1["address"]["type"] == "pci"      # libvirt's address stored at start
    # the guest reports its NICs once its network is up, which may come after it said it is ready
    wait_for_serial(running["serial"], rf"PB-NETS:.*{running['nic1']['mac']}", timeout=60)
    assert running["nic1"]["mac"] in guest_nets(running["serial"]).values()


def test_activate_plugs_into_the_guest_and_stores_the_address(running, api, agent_proc):
    nic2 = ok(api.post(nic_url(running, "nic2") + "/activate", json={}))
    assert nic2["plugged"] and nic2["plug_state"] == "stable" and nic2["address"]["type"] == "pci"
    assert nic2["alias"] in live_aliases(agent_proc, running["vm"]["id"])
    wait_for_serial(running["serial"], rf"PB-NETS:.*{nic2['mac']}", timeout=30)


def test_deactivate_removes_it_and_clears_the_address(running, api, agent_proc):
    nic2 = ok(api.post(nic_url(running, "nic2") + "/deactivate", json={}))
    assert not nic2["plugged"] and nic2["address"] is None and nic2["plug_state"] == "stable"
    assert nic2["alias"] not in live_aliases(agent_proc, running["vm"]["id"])
    wait_for_serial(running["serial"], rf"PB-NETS: (?!.*{nic2['mac']})[^\n]*$", timeout=30)
    codes = [e["code"] for e in ok(api.get(f"/api/events?vm_id={running['vm']['id']}"))]
    assert "NIC_PLUGGED" in codes and "NIC_UNPLUGGED" in codes


def test_update_of_a_plugged_nic_on_a_running_vm_is_refused(running, api):
    f = fault(api.put(nic_url(running, "nic1"), json={"network": "other"}), 409)
    assert "NIC_PLUGGED_ON_RUNNING_VM" in [r["code"] for r in f["reasons"]]
    assert ok(api.get(nic_url(running, "nic1")))["network"] == "pbbr0"


def test_link_state_changes_live(running, api):
    assert ok(api.patch(nic_url(running, "nic1"), json={"linked": False}))["linked"] is False
    assert ok(api.patch(nic_url(running, "nic1"), json={"linked": True}))["linked"] is True


def test_remove_of_a_plugged_nic_is_refused_and_works_after_deactivate(running, api):
    fault(api.delete(nic_url(running, "nic1")), 409)
    assert api.delete(nic_url(running, "nic2")).status_code == 204
    fault(api.get(nic_url(running, "nic2")), 404)


def test_agent_stopped_mid_flow_gives_a_clear_fault_and_changes_nothing(running, api, agent_proc):
    nic = add_nic(api, running["vm"], "nic3", active=False)
    url = f"/api/vms/{running['vm']['id']}/nics/{nic['id']}"
    agent_proc.stop()
    try:
        f = fault(api.post(url + "/activate", json={}), 503)
        assert f["code"] == "HOST_UNREACHABLE" and "lab" in f["message"]
        after = ok(api.get(url))
        assert (after["plugged"], after["plug_state"], after["address"]) == (False, "stable", None)
    finally:
        agent_proc.start()
    assert ok(api.post(url + "/activate", json={}))["plugged"]


def test_engine_killed_between_host_call_and_commit_is_repaired(running, api, engine_parts, agent_proc):
    """The host plugs the NIC, then the engine dies before it commits: the row is left 'plugging'.
    At the next start the monitor's reconciliation reads the truth from the host and repairs it."""
    nic = add_nic(api, running["vm"], "nic4", active=False)
    die_after_host_call(engine_parts, running["vm"]["id"], nic["id"], plug=True)
    url = f"/api/vms/{running['vm']['id']}/nics/{nic['id']}"
    assert ok(api.get(url))["plug_state"] == "plugging"
    assert nic["alias"] in live_aliases(agent_proc, running["vm"]["id"])

    engine_parts["monitor"].reconcile_all(startup=True)       # what the restarted engine does first
    repaired = ok(api.get(url))
    assert (repaired["plugged"], repaired["plug_state"]) == (True, "stable")
    assert repaired["address"]["type"] == "pci"


def test_os_without_nic_hotplug_is_refused_while_running_allowed_while_stopped(api, host):
    vm = new_vm(api, f"xp-{uuid.uuid4().hex[:6]}", os_type="windows_xp")
    nic = add_nic(api, vm, "nic1", active=False)
    url = f"/api/vms/{vm['id']}/nics/{nic['id']}"
    ok(api.post(f"/api/vms/{vm['id']}/start", json={}))
    try:
        f = fault(api.post(url + "/activate", json={}), 409)
        assert "OS_NIC_HOTPLUG_UNSUPPORTED" in [r["code"] for r in f["reasons"]]
        assert ok(api.get(url))["plugged"] is False
    finally:
        ok(api.post(f"/api/vms/{vm['id']}/stop", json={}))
    assert ok(api.post(url + "/activate", json={}))["plugged"] is True


def test_stopped_vm_changes_only_flags(api, host, agent_proc):
    vm = new_vm(api, f"cold-{uuid.uuid4().hex[:6]}")
    nic = add_nic(api, vm, "nic1")
    url = f"/api/vms/{vm['id']}/nics/{nic['id']}"
    assert ok(api.post(url + "/deactivate", json={}))["plugged"] is False
    assert ok(api.post(url + "/activate", json={}))["plugged"] is True
    from tests.integration.vdsm_plugin.conftest import Rpc
    assert vm["id"] not in {v["vmId"] for v in Rpc(agent_proc.url)("VM.list")["vms"]}


def test_unplug_the_guest_does_not_answer_is_202_and_the_monitor_finishes_it(api, host, engine_parts, libvirt_uri):
    vm = new_vm(api, f"silent-{uuid.uuid4().hex[:6]}")      # no guest OS: nobody answers the unplug
    nic = add_nic(api, vm, "nic1")
    url = f"/api/vms/{vm['id']}/nics/{nic['id']}"
    ok(api.post(f"/api/vms/{vm['id']}/start", json={}))
    try:
        resp = api.post(url + "/deactivate", json={})
        assert resp.status_code == 202 and resp.get_json()["plug_state"] == "unplugging"
        conn = libvirt.open(libvirt_uri)
        try:
            conn.lookupByUUIDString(vm["id"]).reset()    # completes the pending PCI unplug
        finally:
            conn.close()
        host_row = engine_parts["monitor"]
        from engine.dao import hosts as hosts_dao
        with engine_parts["sessions"]() as s:
            h = hosts_dao.get(s, host["id"])
        for _ in range(5):
            host_row.run_once(h)
            if ok(api.get(url))["plug_state"] == "stable":
                break
        done = ok(api.get(url))
        assert (done["plugged"], done["plug_state"], done["address"]) == (False, "stable", None)
    finally:
        api.post(f"/api/vms/{vm['id']}/stop", json={})
