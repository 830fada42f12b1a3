"""Regression tests of defects found in the engine, each named for the defect and asserting the fixed
behaviour, over the real database, a FakeHost and (where the defect was a race with it) the monitor."""
from __future__ import annotations

import uuid

import pytest

from engine.app import create_app
from engine.commands import add_host, add_redirdev, plug_unplug_nic, plug_unplug_redirdev, run_vm, stop_vm
from engine.dao import hosts as hosts_dao
from engine.errors import HostUnreachable, ValidationFailed
from engine.monitor import Monitor
from tests.unit.engine.fakehost import FakeHost
from tests.unit.engine.tokens import admin_client


@pytest.fixture
def monitor(sessions, hosts) -> Monitor:
    return Monitor(sessions, hosts, poll_timeout=0.1, in_flight_grace=30, stale_after=120, retry_delay=0.05)


@pytest.fixture
def client(sessions, hosts):
    return admin_client(create_app({"sessions": sessions, "hosts": hosts, "TESTING": True}))


def monitor_applies_events_during(fake: FakeHost, verb: str, monitor: Monitor, host) -> list[int]:
    """Make the monitor apply the host's journal from inside `verb`, after the host acted and before
    the command that called it gets the answer. Returns the events consumed each time."""
    consumed: list[int] = []
    real_call = fake.call

    def call(called: str, params=None, **kw):
        result = real_call(called, params, **kw)
        if called == verb:
            consumed.append(monitor.run_once(host))
        return result

    fake.call = call
    return consumed


# ---- one outcome, one audit record ------------------------------------------------------------

def test_unplug_whose_removal_event_the_monitor_applies_first_is_audited_once(
        sessions, hosts, fake, host, up_vm, make_nic, monitor, db):
    """The agent journals device_removed as it answers; the monitor may apply it before the command
    finishes the row. The NIC is unplugged once: one NIC_UNPLUGGED, no NIC_STATE_REPAIRED."""
    nic = make_nic(up_vm, is_plugged=False)
    plug_unplug_nic.execute(sessions, hosts, plug_unplug_nic.Params(up_vm.id, nic.id, True))
    monitor.run_once(host)                                  # the journal is read up to now
    consumed = monitor_applies_events_during(fake, "VM.hotunplugNic", monitor, host)

    out = plug_unplug_nic.execute(sessions, hosts, plug_unplug_nic.Params(up_vm.id, nic.id, False))

    assert consumed == [1]                                  # the monitor did see device_removed first
    assert not out.pending
    assert db.device_state(nic.id)[:3] == (False, "stable", None)
    monitor.reconcile_vm(up_vm)
    assert db.device_state(nic.id)[:3] == (False, "stable", None)
    codes = db.codes(up_vm.id)
    assert codes.count("NIC_UNPLUGGED") == 1
    assert "NIC_STATE_REPAIRED" not in codes and "NIC_UNPLUG_FAILED" not in codes
    assert codes == ["NIC_PLUGGED", "NIC_UNPLUGGED"]


def test_redirdev_unplug_whose_removal_event_the_monitor_applies_first_is_audited_once(
        sessions, hosts, fake, host, make_vm, monitor, db):
    vm = make_vm(status="up", host=host, graphics="spice")
    fake.add_domain(vm.id, vm.name)
    dev = add_redirdev.execute(sessions, hosts, add_redirdev.Params(vm.id))
    monitor.run_once(host)
    consumed = monitor_applies_events_during(fake, "VM.hotunplugRedirdev", monitor, host)
    plug_unplug_redirdev.execute(sessions, hosts, plug_unplug_redirdev.Params(vm.id, dev.id, False))
    assert consumed == [1]
    monitor.reconcile_vm(vm)
    assert db.device_state(dev.id)[:3] == (False, "stable", None)
    assert db.codes(vm.id) == ["REDIRDEV_ADDED", "REDIRDEV_PLUGGED", "REDIRDEV_UNPLUGGED"]


# ---- `plugged` is the desired state at all times -------------------------------------------------

def test_pending_unplug_reads_plugged_false_unplugging(client, sessions, hosts, fake, up_vm, make_nic):
    nic = make_nic(up_vm, is_plugged=False)
    plug_unplug_nic.execute(sessions, hosts, plug_unplug_nic.Params(up_vm.id, nic.id, True))
    fake.pending_unplug = True
    base = f"/api/vms/{up_vm.id}/nics"
    r = client.post(f"{base}/{nic.id}/deactivate")
    assert r.status_code == 202, r.get_json()
    assert (r.get_json()["plugged"], r.get_json()["plug_state"]) == (False, "unplugging")
    assert r.get_json()["address"] is not None          # the guest still has it
    got = client.get(f"{base}/{nic.id}").get_json()
    assert (got["plugged"], got["plug_state"]) == (False, "unplugging")
    [listed] = client.get(base).get_json()
    assert (listed["plugged"], listed["plug_state"]) == (False, "unplugging")


def test_plug_in_flight_reads_plugged_true(client, sessions, hosts, fake, up_vm, make_nic):
    """The host got the plug but its answer never came (see test_unanswered_plug_stays_in_flight_for_
    reconciliation): the NIC is wanted plugged, and says so."""
    nic = make_nic(up_vm, is_plugged=False)
    fake.unanswered = True
    base = f"/api/vms/{up_vm.id}/nics"
    r = client.post(f"{base}/{nic.id}/activate")
    assert r.status_code == 503
    got = client.get(f"{base}/{nic.id}").get_json()
    assert (got["plugged"], got["plug_state"]) == (True, "plugging")
    [listed] = client.get(base).get_json()
    assert (listed["plugged"], listed["plug_state"]) == (True, "plugging")


def test_plug_in_flight_via_command_reads_plugged_true(sessions, hosts, fake, up_vm, make_nic, db):
    nic = make_nic(up_vm, is_plugged=False)
    fake.unanswered = True
    with pytest.raises(HostUnreachable):
        plug_unplug_nic.execute(sessions, hosts, plug_unplug_nic.Params(up_vm.id, nic.id, True))
    assert db.device_state(nic.id)[:2] == (True, "plugging")


# ---- refusals are audited once, as refusals ------------------------------------------------------

def test_start_of_a_running_vm_is_audited_once_as_a_refusal(sessions, hosts, fake, up_vm, db):
    with pytest.raises(ValidationFailed) as err:
        run_vm.execute(sessions, hosts, run_vm.Params(up_vm.id))
    assert [r.code for r in err.value.reasons] == ["VM_NOT_DOWN"]
    [event] = db.events(up_vm.id)
    assert event.code == "VM_START_REFUSED" and event.severity == "warning"
    assert event.message.count("Cannot run VM") == 1
    assert err.value.message.count("Cannot run VM") == 1
    assert [r["code"] for r in event.vars["reasons"]] == ["VM_NOT_DOWN"]
    assert fake.calls == []


def test_start_of_a_running_vm_through_rest_is_audited_once(client, sessions, hosts, fake, up_vm, db):
    r = client.post(f"/api/vms/{up_vm.id}/start")
    assert r.status_code == 409
    fault = r.get_json()["fault"]
    assert fault["message"].count("Cannot run VM") == 1
    assert [x["code"] for x in fault["reasons"]] == ["VM_NOT_DOWN"]
    assert db.codes(up_vm.id) == ["VM_START_REFUSED"]
    assert db.events(up_vm.id)[0].message.count("Cannot run VM") == 1
    assert fake.calls == []


def test_stop_of_a_down_vm_is_audited_once_as_a_refusal(sessions, hosts, down_vm, db):
    with pytest.raises(ValidationFailed):
        stop_vm.execute(sessions, hosts, stop_vm.Params(down_vm.id))
    [event] = db.events(down_vm.id)
    assert event.code == "VM_STOP_REFUSED"
    assert event.message.count("Cannot stop VM") == 1


# ---- a VM that is powering up belongs to its start ---------------------------------------------

def test_stop_of_a_powering_up_vm_is_refused(sessions, hosts, fake, host, make_vm, db):
    vm = make_vm(status="powering_up", host=host)
    fake.add_domain(vm.id, vm.name)
    fake.calls.clear()
    with pytest.raises(ValidationFailed) as err:
        stop_vm.execute(sessions, hosts, stop_vm.Params(vm.id))
    assert err.value.status == 409
    assert [r.code for r in err.value.reasons] == ["VM_STATUS_ILLEGAL"]
    assert fake.sent("VM.destroy") == []
    got = db.vm(vm.id)
    assert (got.status, got.run_on_host) == ("powering_up", host.id)
    assert db.codes(vm.id) == ["VM_STOP_REFUSED"]


def test_stop_of_a_powering_up_vm_through_rest_is_409(client, fake, host, make_vm, db):
    vm = make_vm(status="powering_up", host=host)
    fake.add_domain(vm.id, vm.name)
    r = client.post(f"/api/vms/{vm.id}/stop")
    assert r.status_code == 409
    assert [x["code"] for x in r.get_json()["fault"]["reasons"]] == ["VM_STATUS_ILLEGAL"]
    assert fake.sent("VM.destroy") == []
    assert db.vm(vm.id).status == "powering_up"


# ---- lifecycle events of an earlier run --------------------------------------------------------

def test_stop_event_from_before_the_current_run_is_ignored(sessions, hosts, fake, host, make_vm, monitor, db):
    """The VM had stopped outside the engine (its shut-off domain left on the host, a `stopped` in the
    journal); the engine starts it again. That old `stopped` must not mark the new run down; a stop
    after the start does, and the monitor then has the host drop the shut-off domain."""
    vm = make_vm(status="down")
    fake.add_domain(vm.id, vm.name)
    fake.call("VM.destroy", {"vmId": vm.id, "undefine": False})     # seq 1: stopped, domain kept
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id, host.id))  # seq 2: started
    assert db.vm(vm.id).run_event_seq == 2
    destroys = len(fake.sent("VM.destroy"))

    assert monitor.run_once(host) == 2
    got = db.vm(vm.id)
    assert (got.status, got.run_on_host) == ("up", host.id)
    assert "VM_STOPPED" not in db.codes(vm.id)
    assert len(fake.sent("VM.destroy")) == destroys              # the monitor left the host alone

    fake.call("VM.destroy", {"vmId": vm.id, "undefine": False})     # seq 3: the guest powered off
    assert monitor.run_once(host) == 1
    got = db.vm(vm.id)
    assert (got.status, got.run_on_host) == ("down", None)
    assert db.codes(vm.id)[-1] == "VM_STOPPED"
    assert fake.sent("VM.destroy")[-1] == {"vmId": vm.id, "undefine": True}
    assert vm.id not in fake.domains


def test_stop_event_at_the_runs_own_journal_position_is_ignored(sessions, hosts, fake, host, make_vm, monitor, db):
    vm = make_vm(status="up", host=host, run_event_seq=2)
    fake.add_domain(vm.id, vm.name)
    fake.call("VM.destroy", {"vmId": vm.id, "undefine": False})     # seq 1
    fake.call("VM.destroy", {"vmId": vm.id, "undefine": False})     # seq 2 == run_event_seq
    fake.calls.clear()
    assert monitor.run_once(host) == 2
    assert db.vm(vm.id).status == "up"
    assert fake.calls == [("Host.getEvents", {"after": 0, "timeout": 0.1, "limit": 500})]
    fake.call("VM.destroy", {"vmId": vm.id, "undefine": False})     # seq 3
    monitor.run_once(host)
    assert db.vm(vm.id).status == "down"
    assert fake.sent("VM.destroy")[-1] == {"vmId": vm.id, "undefine": True}


# ---- a new host starts at the agent's current journal position -----------------------------------

def test_added_host_starts_at_the_agents_journal_position(sessions, hosts, monitor, db):
    agent = hosts.add(FakeHost("h9"))
    old = str(uuid.uuid4())
    agent.add_domain(old, "old")
    agent.call("VM.destroy", {"vmId": old})                        # history from before the engine knew it
    agent.add_domain(old, "old")
    agent.call("VM.destroy", {"vmId": old, "undefine": False})
    last = agent.call("Host.getEvents", {"after": 0, "timeout": 0})["last"]
    assert last == 2

    out = add_host.execute(sessions, hosts, add_host.Params("h9", "http://127.0.0.1:54321/jsonrpc"))
    with sessions.begin() as s:
        host = hosts_dao.get(s, out.id)
        assert host.last_event_seq == last
    assert monitor.run_once(host) == 0                              # nothing old is replayed
    assert db.codes() == ["HOST_ADDED"]
