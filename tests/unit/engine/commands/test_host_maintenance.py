"""Taking a host out and bringing it back: maintenance, activate, remove; what a host in maintenance
refuses, and the races of a maintenance with a start and of a removal with an attach."""
from __future__ import annotations

import threading

import pytest

from engine.commands import (activate_host, add_hostdev, fence_host, host_maintenance, refresh_host, remove_host,
                             run_vm, stop_vm)
from engine.dao import devices, host_devices, hosts as hosts_dao, vms
from engine.errors import EngineError, HostUnreachable, NotFound, ValidationFailed
from tests.unit.engine.commands.refusals import refused


def usb(name="usb_1_5", port="1-2", serial="K1"):
    return {"name": name, "capability": "usb_device", "vendorId": "0781", "productId": "5567", "portPath": port,
            "serial": serial, "allowed": True}


def status(sessions, host) -> str | None:
    with sessions() as s:
        row = hosts_dao.get(s, host.id)
        return None if row is None else row.status


def maintenance(sessions, hosts, host):
    return host_maintenance.execute(sessions, hosts, host_maintenance.Params(host.id))


def test_an_idle_host_goes_to_maintenance_without_a_host_call(sessions, hosts, fake, host, db):
    maintenance(sessions, hosts, host)
    assert status(sessions, host) == "maintenance"
    assert fake.calls == []
    [event] = db.events(code="HOST_MAINTENANCE")
    assert (event.host_id, event.vars["was"]) == (host.id, "up")


def test_a_host_that_runs_vms_is_refused_naming_them(sessions, hosts, fake, host, up_vm, make_vm, db):
    make_vm("paused-one", status="paused", host=host)
    make_vm("stopped-one", status="down", host=host)        # down: it has no domain there
    err = refused(sessions, db, fake, "HOST_MAINTENANCE", lambda: maintenance(sessions, hosts, host), "HOST_RUNS_VMS")
    assert err.reasons[0].vars["vms"] == sorted([up_vm.name, "paused-one"])
    assert status(sessions, host) == "up"


def test_maintenance_twice_is_refused(sessions, hosts, fake, host, db):
    maintenance(sessions, hosts, host)
    refused(sessions, db, fake, "HOST_MAINTENANCE", lambda: maintenance(sessions, hosts, host), "HOST_IN_MAINTENANCE")


def test_unknown_host_is_not_found(sessions, hosts):
    for command in (host_maintenance, activate_host, remove_host, refresh_host, fence_host):
        with pytest.raises(NotFound) as err:
            command.execute(sessions, hosts, command.Params("nope"))
        assert [r.code for r in err.value.reasons] == ["HOST_NOT_FOUND"]


def test_no_vm_starts_on_a_host_in_maintenance(sessions, hosts, fake, host, down_vm, db):
    maintenance(sessions, hosts, host)
    refused(sessions, db, fake, "VM_START", lambda: run_vm.execute(sessions, hosts, run_vm.Params(down_vm.id)),
            "NO_HOST_AVAILABLE")
    refused(sessions, db, fake, "VM_START",
            lambda: run_vm.execute(sessions, hosts, run_vm.Params(down_vm.id, host_id=host.id)), "HOST_NOT_UP")


def test_a_refresh_keeps_a_host_in_maintenance(sessions, hosts, fake, host, db):
    """Before, a refresh marked every host that answered up, and one that did not unreachable: either
    took it out of maintenance without a word (the monitor then watched it again)."""
    maintenance(sessions, hosts, host)
    fake.capabilities["bridges"].append("br9")
    refresh_host.execute(sessions, hosts, refresh_host.Params(host.id))
    assert status(sessions, host) == "maintenance"
    with sessions() as s:
        assert "br9" in hosts_dao.get(s, host.id).capabilities["bridges"]
    fake.unreachable = True
    with pytest.raises(HostUnreachable):
        refresh_host.execute(sessions, hosts, refresh_host.Params(host.id))
    assert status(sessions, host) == "maintenance"


def test_activate_reads_the_host_again_and_brings_it_up(sessions, hosts, fake, host, down_vm, db):
    maintenance(sessions, hosts, host)
    fake.capabilities["bridges"].append("br9")
    fake.hostdevs.append(usb())
    activate_host.execute(sessions, hosts, activate_host.Params(host.id))
    assert status(sessions, host) == "up"
    with sessions() as s:
        assert "br9" in hosts_dao.get(s, host.id).capabilities["bridges"]
        assert [d.name for d in host_devices.list_for_host(s, host.id)] == ["usb_1_5"]
    assert "HOST_ACTIVATED" in db.codes()
    run_vm.execute(sessions, hosts, run_vm.Params(down_vm.id))         # a place to start VMs again
    assert len(fake.sent("VM.create")) == 1


def test_activate_of_an_up_host_is_refused(sessions, hosts, fake, host, db):
    refused(sessions, db, fake, "HOST_ACTIVATE",
            lambda: activate_host.execute(sessions, hosts, activate_host.Params(host.id)), "HOST_NOT_IN_MAINTENANCE")


def test_an_unreachable_host_stays_in_maintenance_at_activate(sessions, hosts, fake, host, db):
    maintenance(sessions, hosts, host)
    fake.unreachable = True
    with pytest.raises(HostUnreachable):
        activate_host.execute(sessions, hosts, activate_host.Params(host.id))
    assert status(sessions, host) == "maintenance"
    assert "HOST_ACTIVATED" not in db.codes()


def test_a_host_activated_meanwhile_is_not_activated_twice(sessions, hosts, fake, host, db, monkeypatch):
    """Two activates that both found the host in maintenance: the second finds it up when it stores."""
    maintenance(sessions, hosts, host)
    real = fake.call

    def call(verb, params, **kw):
        answer = real(verb, params, **kw)
        if verb == "Host.getCapabilities":      # the other request stores its answer first
            with sessions.begin() as s:
                hosts_dao.set_status(s, host.id, "up")
        return answer

    monkeypatch.setattr(fake, "call", call)
    with pytest.raises(ValidationFailed) as err:
        activate_host.execute(sessions, hosts, activate_host.Params(host.id))
    assert [r.code for r in err.value.reasons] == ["HOST_NOT_IN_MAINTENANCE"]
    assert db.codes()[-1] == "HOST_ACTIVATE_REFUSED"


def test_remove_a_host_in_maintenance(sessions, hosts, fake, host, make_vm, db):
    inventory = [usb(), usb("usb_1_6", port="1-3", serial="K2")]
    with sessions.begin() as s:
        host_devices.sync(s, host.id, inventory)
    last_ran_there = make_vm("idle", status="down", host=host)
    maintenance(sessions, hosts, host)
    remove_host.execute(sessions, hosts, remove_host.Params(host.id))
    assert status(sessions, host) is None
    with sessions() as s:
        assert host_devices.list_for_host(s, host.id) == []
        assert vms.get(s, last_ran_there.id).run_on_host is None
    [event] = db.events(code="HOST_REMOVED")
    assert (event.host_id, event.vars["host"]) == (host.id, host.name)
    assert fake.calls == []


def test_a_host_not_in_maintenance_is_not_removed(sessions, hosts, fake, host, db):
    refused(sessions, db, fake, "HOST_REMOVE",
            lambda: remove_host.execute(sessions, hosts, remove_host.Params(host.id)), "HOST_NOT_IN_MAINTENANCE")
    assert status(sessions, host) == "up"


@pytest.mark.parametrize("active", [True, False], ids=["held", "configured"])
def test_a_host_whose_devices_vms_have_is_not_removed(sessions, hosts, fake, host, down_vm, db, active):
    """A device a stopped VM holds (allocated), or has among its deactivated devices: removing the host
    would take it from the VM without a word (its row's link set to NULL)."""
    with sessions.begin() as s:
        (key,) = host_devices.sync(s, host.id, [usb()]).added
    out = add_hostdev.execute(sessions, hosts, add_hostdev.Params(down_vm.id, key, active=active))
    maintenance(sessions, hosts, host)
    err = refused(sessions, db, fake, "HOST_REMOVE",
                  lambda: remove_host.execute(sessions, hosts, remove_host.Params(host.id)), "HOST_DEVICES_HELD")
    assert err.reasons[0].vars["devices"] == [{"device": "usb_1_5", "vm": down_vm.name}]
    assert db.device(out.id).host_device_id == key


def test_after_a_stop_the_host_goes_to_maintenance(sessions, hosts, fake, host, up_vm, db):
    stop_vm.execute(sessions, hosts, stop_vm.Params(up_vm.id))
    maintenance(sessions, hosts, host)
    assert status(sessions, host) == "maintenance"


def fence(sessions, hosts, host):
    return fence_host.execute(sessions, hosts, fence_host.Params(host.id))


def test_a_dead_host_confirmed_rebooted_gives_its_vms_back_and_can_then_be_removed(sessions, hosts, fake, host,
                                                                                  make_vm, make_nic, db):
    """A host that died with its VMs: they stay in their last status (unknown) and nothing through the
    host can stop them, so the host could never be taken out. Confirmed rebooted, they are down."""
    web = make_vm("web", status="unknown", host=host)
    db_vm = make_vm("db", status="paused", host=host)
    plugging = make_nic(web, "eth0", plug_state="plugging")
    with sessions.begin() as s:
        hosts_dao.set_status(s, host.id, "unreachable")
    fake.unreachable = True
    with pytest.raises(ValidationFailed) as err:
        maintenance(sessions, hosts, host)
    assert "confirm that it was" in err.value.reasons[0].message

    fence(sessions, hosts, host)
    with sessions() as s:
        for vm in (web, db_vm):
            row = vms.get(s, vm.id)
            assert (row.status, row.run_on_host) == ("down", None)
    dev = db.device(plugging.id)
    assert (dev.plug_state, dev.is_plugged) == ("stable", False)      # the plug did not complete
    [event] = db.events(code="HOST_FENCED")
    assert event.vars["vms"] == ["db", "web"] and event.severity == "warning"
    assert len(db.events(code="VM_STOPPED")) == 2
    assert fake.calls == []
    maintenance(sessions, hosts, host)
    remove_host.execute(sessions, hosts, remove_host.Params(host.id))
    assert status(sessions, host) is None


def test_a_host_whose_vm_is_still_starting_is_not_confirmed_rebooted(sessions, hosts, fake, host, make_vm, db):
    """A VM powering up belongs to its start, which settles it when its host call ends: marked down
    under it, a newer run could be undone by that start's late answer."""
    make_vm("starting", status="powering_up", host=host)
    make_vm("web", status="unknown", host=host)
    with sessions.begin() as s:
        hosts_dao.set_status(s, host.id, "unreachable")
    err = refused(sessions, db, fake, "HOST_FENCE", lambda: fence(sessions, hosts, host), "HOST_VMS_CHANGING")
    assert err.reasons[0].vars["vms"] == ["starting"]
    with sessions() as s:
        assert [vm.status for vm in vms.list_on_host(s, host.id)] == ["powering_up", "unknown"]


def test_a_start_whose_vm_was_taken_away_keeps_the_claims_it_does_not_own(sessions, hosts, fake, host, down_vm,
                                                                          monkeypatch):
    """The start's host call failed after its VM stopped being its own (here: marked down and started
    again meanwhile): the claims of that newer run stay."""
    from engine.devices import claims

    dropped: list[str] = []
    monkeypatch.setattr(claims, "drop_for_run", lambda s, vm_id: dropped.append(vm_id))
    real = fake.call

    def call(verb, params, **kw):
        if verb == "VM.create":
            with sessions.begin() as s:
                vms.set_status_cas(s, down_vm.id, ("powering_up",), "up")       # a newer run's
            fake.fail("VM.create", "createErr")
        return real(verb, params, **kw)

    monkeypatch.setattr(fake, "call", call)
    with pytest.raises(EngineError):
        run_vm.execute(sessions, hosts, run_vm.Params(down_vm.id))
    assert dropped == []
    with sessions() as s:
        assert vms.get(s, down_vm.id).status == "up"


def test_a_host_that_answers_is_not_confirmed_rebooted(sessions, hosts, fake, host, up_vm, db):
    refused(sessions, db, fake, "HOST_FENCE", lambda: fence(sessions, hosts, host), "HOST_NOT_UNREACHABLE")
    with sessions() as s:
        assert vms.get(s, up_vm.id).status == "up"


def test_a_refresh_during_a_removal_waits_and_finds_the_host_gone(race_sessions, hosts, fake, host, monkeypatch):
    """The removal holds the host's row, then its devices' rows; a refresh takes them in the same order,
    so it waits and then finds no host. (The removal took the device rows first: on PostgreSQL a
    refresh that changed a device deadlocked with it.)"""
    with race_sessions.begin() as s:
        host_devices.sync(s, host.id, [usb(), usb("usb_1_6", port="1-3", serial="K2")])
    maintenance(race_sessions, hosts, host)
    fake.hostdevs[:] = [usb()]          # the refresh would mark usb_1_6 removed
    real = host_devices.held_on_host
    threads: list[threading.Thread] = []

    def held(*a, **kw):
        found = real(*a, **kw)
        threads.append(_meanwhile(lambda: refresh_host.execute(race_sessions, hosts, refresh_host.Params(host.id))))
        return found

    monkeypatch.setattr(host_devices, "held_on_host", held)
    remove_host.execute(race_sessions, hosts, remove_host.Params(host.id))
    refreshed = _outcome(threads[0])
    assert isinstance(refreshed, NotFound), refreshed
    assert status(race_sessions, host) is None


# ---- races ---------------------------------------------------------------------------------------

def _meanwhile(action, wait: float = 0.5) -> threading.Thread:
    """Run `action` in another thread and give it `wait` seconds: long enough to finish unless it waits
    for a lock the caller holds (then it finishes after the caller's transaction)."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(action())
        except Exception as exc:  # asserted on by the caller
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.result = result      # type: ignore[attr-defined]
    thread.start()
    thread.join(wait)
    return thread


def _outcome(thread: threading.Thread) -> object:
    thread.join(30)
    assert not thread.is_alive()
    return thread.result[0]     # type: ignore[attr-defined]


def test_a_maintenance_between_a_starts_checks_and_its_placement(race_sessions, hosts, fake, host, down_vm, db,
                                                                monkeypatch):
    """The maintenance commits after the start chose the host and before it places the VM there: the
    start finds the host in maintenance. (Without the start's lock on the host row, PostgreSQL let both
    win: a VM running on a host in maintenance.)"""
    real = run_vm._inputs
    threads: list[threading.Thread] = []

    def inputs(*a, **kw):
        found = real(*a, **kw)
        if not threads:
            threads.append(_meanwhile(lambda: maintenance(race_sessions, hosts, host)))
        return found

    monkeypatch.setattr(run_vm, "_inputs", inputs)
    try:
        started: object = run_vm.execute(race_sessions, hosts, run_vm.Params(down_vm.id, host_id=host.id))
    except EngineError as err:
        started = err
    put = _outcome(threads[0])
    won = [not isinstance(started, Exception), not isinstance(put, Exception)]
    assert won.count(True) == 1, (started, put)
    with race_sessions() as s:
        vm, row = vms.get(s, down_vm.id), hosts_dao.get(s, host.id)
        if won[0]:      # SQLite: the maintenance waited for the start and found the VM
            assert (vm.status, row.status) == ("up", "up")
            assert [r.code for r in put.reasons] == ["HOST_RUNS_VMS"]      # type: ignore[attr-defined]
        else:           # PostgreSQL: the start found the host in maintenance
            assert (vm.status, vm.run_on_host, row.status) == ("down", None, "maintenance")
            assert [r.code for r in started.reasons] == ["HOST_NOT_UP"]      # type: ignore[attr-defined]
            assert fake.sent("VM.create") == []


def test_an_attach_between_a_removals_check_and_its_delete(race_sessions, hosts, fake, host, down_vm, db,
                                                          monkeypatch):
    """An attach of the host's device starts after the removal found no VM holding one: it waits for the
    removal, then finds the device gone. (Without the removal's lock on the device rows, PostgreSQL
    ended the attach in a deadlock error.)"""
    with race_sessions.begin() as s:
        (key,) = host_devices.sync(s, host.id, [usb()]).added
    maintenance(race_sessions, hosts, host)
    real = host_devices.held_on_host
    threads: list[threading.Thread] = []

    def held(*a, **kw):
        found = real(*a, **kw)
        threads.append(_meanwhile(lambda: add_hostdev.execute(race_sessions, hosts,
                                                              add_hostdev.Params(down_vm.id, key))))
        return found

    monkeypatch.setattr(host_devices, "held_on_host", held)
    try:
        removed: object = remove_host.execute(race_sessions, hosts, remove_host.Params(host.id))
    except EngineError as err:
        removed = err
    attached = _outcome(threads[0])
    # The removal went first everywhere: SQLite's attach waited for the write lock, PostgreSQL's for
    # the device's row; either way the attach is refused, not an error (it was a deadlock).
    assert not isinstance(removed, Exception), removed
    assert isinstance(attached, EngineError) and [r.code for r in attached.reasons] == ["HOST_DEVICE_NOT_FOUND"], \
        attached
    with race_sessions() as s:
        assert [d for d in devices.list_for_vm(s, down_vm.id) if d.type == "hostdev"] == []
        assert hosts_dao.get(s, host.id) is None
