"""NIC commands end to end over the dao fixtures and a FakeHost."""
from __future__ import annotations

import threading
from unittest import mock

import pytest
from sqlalchemy import event

from engine.commands import add_nic, plug_unplug_nic, remove_nic, update_nic
from engine.dao import devices
from engine.errors import Conflict, HostCallFailed, HostUnreachable, NotFound, ValidationFailed

PCI = {"type": "pci", "domain": "0x0000", "bus": "0x00", "slot": "0x07", "function": "0x0"}


def plug(sessions, hosts, vm, nic, on=True):
    return plug_unplug_nic.execute(sessions, hosts, plug_unplug_nic.Params(vm.id, nic.id, on))


# ---- VM down: the database only ---------------------------------------------------------------------

def test_plug_on_down_vm_sets_the_flag_only(sessions, hosts, fake, down_vm, make_nic, db):
    nic = make_nic(down_vm, is_plugged=False)
    out = plug(sessions, hosts, down_vm, nic)
    assert out.id == nic.id and not out.pending
    assert db.device_state(nic.id)[:3] == (True, "stable", None)
    assert fake.calls == []
    assert db.codes(down_vm.id) == ["NIC_PLUGGED"]


def test_unplug_on_down_vm_clears_the_address(sessions, hosts, fake, down_vm, make_nic, db):
    nic = make_nic(down_vm, is_plugged=True, address=PCI)
    plug(sessions, hosts, down_vm, nic, on=False)
    assert db.device_state(nic.id)[:3] == (False, "stable", None)
    assert fake.calls == []
    assert db.codes(down_vm.id) == ["NIC_UNPLUGGED"]


def test_cold_plug_allowed_for_an_os_without_hotplug(sessions, hosts, make_vm, make_nic, db):
    vm = make_vm(status="down", os_type="windows_xp")
    nic = make_nic(vm, is_plugged=False)
    plug(sessions, hosts, vm, nic)
    assert db.device(nic.id).is_plugged


# ---- VM up: the state machine ---------------------------------------------------------------------

def test_a_hot_plug_checks_out_one_connection_for_both_its_transactions(sessions, hosts, up_vm, make_nic):
    """The transaction before the host call and the one after it share a connection (one checkout,
    so on PostgreSQL at most one ping); the pool hands it back when the command ends."""
    nic = make_nic(up_vm, is_plugged=False)
    engine = sessions.kw["bind"]
    checkouts = []

    def count(dbapi_conn, _record, _proxy):
        checkouts.append(dbapi_conn)
    event.listen(engine, "checkout", count)
    try:
        plug(sessions, hosts, up_vm, nic)
        plug(sessions, hosts, up_vm, nic, on=False)
    finally:
        event.remove(engine, "checkout", count)
    assert len(checkouts) == 2                          # one per command
    assert engine.pool.checkedout() == 0


def test_a_hot_plug_and_unplug_send_these_statements(sessions, hosts, up_vm, make_nic, db):
    """What a live activate and deactivate cost the database: the VM and its NIC, with whether its MAC
    is claimed elsewhere, in one SELECT (the MAC had a SELECT of its own). On PostgreSQL that read is
    not locked; the begin, the MAC's claim and the move of the VM's version are one statement, and the
    finish, its audit event and the MAC's release another (data-modifying WITHs): three statements,
    all in autocommit, without BEGIN and COMMIT. On SQLite the VM is locked (its version moved) and
    read, and each write is a statement of its own."""
    nic = make_nic(up_vm, is_plugged=False)
    engine = sessions.kw["bind"]
    pg = engine.dialect.name == "postgresql"
    sent: list[str] = []

    def seen(conn, cursor, statement, *args):
        autocommit = pg and conn.connection.dbapi_connection.autocommit
        sent.append(" ".join(statement.split()[:3]) + (" (autocommit)" if autocommit else ""))
    event.listen(engine, "before_cursor_execute", seen)
    try:
        plug(sessions, hosts, up_vm, nic)
        activate, sent[:] = sent[:], []
        plug(sessions, hosts, up_vm, nic, on=False)
        deactivate = sent[:]
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    begin = ["UPDATE vms SET", "SELECT vms.id, vms.name,", "UPDATE vm_devices SET"]
    if pg:
        assert activate == deactivate == ["SELECT vms.id, vms.name, (autocommit)", "WITH bump AS (autocommit)",
                                          "WITH cas AS (autocommit)"]
    else:
        assert activate == [*begin, "UPDATE vm_nics SET", "UPDATE vm_devices SET", "INSERT INTO audit_events"]
        assert deactivate == [*begin, "UPDATE vm_devices SET", "UPDATE vm_nics SET", "INSERT INTO audit_events"]
    assert db.codes(up_vm.id) == ["NIC_PLUGGED", "NIC_UNPLUGGED"]
    assert db.nic(up_vm.id, nic.id).claimed_mac is None


def _fail(verb, code):
    return lambda fake: fake.fail(verb, code)


@pytest.mark.parametrize("on, arrange, code", [
    (True, lambda fake: None, "NIC_PLUGGED"),
    (False, lambda fake: None, "NIC_UNPLUGGED"),
    (True, _fail("VM.hotplugNic", 49), "NIC_PLUG_FAILED"),
    (False, _fail("VM.hotunplugNic", 50), "NIC_UNPLUG_FAILED"),
    (False, _fail("VM.hotunplugNic", "deviceNotFound"), "NIC_UNPLUGGED"),
    (False, lambda fake: setattr(fake, "pending_unplug", True), "NIC_UNPLUG_PENDING"),
    (True, lambda fake: setattr(fake, "unreachable", True), "HOST_UNREACHABLE"),
    (False, lambda fake: setattr(fake, "unanswered", True), "HOST_UNREACHABLE"),
], ids=["plugged", "unplugged", "plug-failed", "unplug-failed", "gone", "pending", "rolled-back", "unanswered"])
def test_every_end_of_a_live_operation_is_one_statement(sessions, hosts, fake, up_vm, make_nic, db, on, arrange,
                                                        code):
    """However the host answers, the NIC's finish (its compare-and-set, audit event and MAC release) is
    one statement after the host call: on PostgreSQL run in autocommit, with no BEGIN or COMMIT."""
    nic = make_nic(up_vm, is_plugged=False)
    if not on:
        plug(sessions, hosts, up_vm, nic)
    engine = sessions.kw["bind"]
    pg = engine.dialect.name == "postgresql"
    after_host: list[tuple[str, bool]] = []
    called = [False]
    real = fake.call

    def tracking(*args, **kw):
        called[0] = True
        return real(*args, **kw)

    def seen(conn, cursor, statement, *args):
        if called[0]:
            after_host.append((" ".join(statement.split()[:2]), pg and conn.connection.dbapi_connection.autocommit))
    arrange(fake)
    event.listen(engine, "before_cursor_execute", seen)
    try:
        with mock.patch.object(fake, "call", tracking):
            try:
                plug(sessions, hosts, up_vm, nic, on=on)
            except (HostCallFailed, HostUnreachable):
                pass
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert called[0] and db.codes(up_vm.id)[-1] == code
    assert after_host[0][0] == ("WITH cas" if pg else "UPDATE vm_devices")
    if pg:
        assert after_host[0] == ("WITH cas", True)
        assert [s for s in after_host[1:] if not s[0].startswith("SELECT")] == []


def test_hotplug_stores_address_and_alias(sessions, hosts, fake, up_vm, make_nic, db):
    nic = make_nic(up_vm, is_plugged=False, network="br0")
    out = plug(sessions, hosts, up_vm, nic)
    assert not out.pending
    sent = fake.sent("VM.hotplugNic")
    assert len(sent) == 1
    assert sent[0]["vmId"] == up_vm.id
    assert sent[0]["nic"] == {"type": "interface", "device": "bridge", "network": "br0", "alias": f"ua-{nic.id}",
                              "macAddr": nic.mac, "nicModel": "pv", "linkActive": True}
    is_plugged, state, address, alias, error = db.device_state(nic.id)
    assert (is_plugged, state, alias, error) == (True, "stable", f"ua-{nic.id}", None)
    assert address == fake.domain(up_vm.id).find(alias=alias)["address"]
    assert address["slot"] == "0x03"
    assert db.codes(up_vm.id) == ["NIC_PLUGGED"]


def test_hotunplug_clears_the_address_and_replug_gets_a_fresh_one(sessions, hosts, fake, up_vm, make_nic, db):
    nic = make_nic(up_vm, is_plugged=False)
    other = make_nic(up_vm, is_plugged=False)
    plug(sessions, hosts, up_vm, nic)                      # slot 3
    plug(sessions, hosts, up_vm, nic, on=False)
    assert fake.sent("VM.hotunplugNic")[0]["nic"]["alias"] == f"ua-{nic.id}"
    assert db.device_state(nic.id)[:3] == (False, "stable", None)
    assert fake.domain(up_vm.id).find(alias=f"ua-{nic.id}") is None
    plug(sessions, hosts, up_vm, other)                    # takes the freed slot 3
    plug(sessions, hosts, up_vm, nic)                      # no stale address sent: gets slot 4
    assert "address" not in fake.sent("VM.hotplugNic")[-1]["nic"]
    assert db.device(other.id).address["slot"] == "0x03"
    assert db.device(nic.id).address["slot"] == "0x04"
    assert db.codes(up_vm.id) == ["NIC_PLUGGED", "NIC_UNPLUGGED", "NIC_PLUGGED", "NIC_PLUGGED"]


def test_plug_failure_leaves_the_nic_unplugged_with_the_host_error(sessions, hosts, fake, up_vm, make_nic, db):
    nic = make_nic(up_vm, is_plugged=False)
    fake.fail("VM.hotplugNic", 49)
    with pytest.raises(HostCallFailed) as err:
        plug(sessions, hosts, up_vm, nic)
    assert err.value.host_code == 49 and err.value.host == "host1"
    assert err.value.to_dict()["host"] == {"name": "host1", "code": 49, "message": "Failed to hotplug NIC"}
    is_plugged, state, address, _, error = db.device_state(nic.id)
    assert (is_plugged, state, address) == (False, "stable", None)
    assert error["code"] == 49 and error["message"] == "Failed to hotplug NIC" and error["verb"] == "VM.hotplugNic"
    [event] = db.events(up_vm.id)
    assert (event.code, event.severity, event.host_code, event.host_message) == \
        ("NIC_PLUG_FAILED", "error", 49, "Failed to hotplug NIC")
    assert event.device_id == nic.id


def test_unplug_failure_keeps_the_nic_plugged(sessions, hosts, fake, up_vm, make_nic, db):
    nic = make_nic(up_vm, is_plugged=False)
    plug(sessions, hosts, up_vm, nic)
    address = db.device(nic.id).address
    fake.fail("VM.hotunplugNic", 50)
    with pytest.raises(HostCallFailed):
        plug(sessions, hosts, up_vm, nic, on=False)
    is_plugged, state, kept, _, error = db.device_state(nic.id)
    assert (is_plugged, state, kept) == (True, "stable", address)
    assert error["code"] == 50
    assert db.events(up_vm.id, code="NIC_UNPLUG_FAILED")[0].host_code == 50


def test_unplug_of_a_device_the_host_no_longer_has_completes(sessions, hosts, fake, up_vm, make_nic, db):
    nic = make_nic(up_vm, is_plugged=True, address=PCI)    # the domain has no such device
    out = plug(sessions, hosts, up_vm, nic, on=False)
    assert not out.pending
    assert db.device_state(nic.id)[:3] == (False, "stable", None)
    assert db.events(up_vm.id)[-1].host_code == 304


@pytest.mark.parametrize("on", [True, False])
def test_unreachable_host_changes_nothing(sessions, hosts, fake, up_vm, make_nic, db, on):
    nic = make_nic(up_vm, is_plugged=not on, address=None if on else PCI,
                   last_error={"code": 49, "message": "earlier"})
    before = db.device_state(nic.id)
    fake.unreachable = True
    with pytest.raises(HostUnreachable) as err:
        plug(sessions, hosts, up_vm, nic, on=on)
    assert err.value.host == "host1" and "host1" in err.value.message
    assert db.device_state(nic.id) == before
    assert db.vm(up_vm.id).status == "up"
    assert db.codes(up_vm.id) == ["HOST_UNREACHABLE"]


def test_unanswered_plug_stays_in_flight_for_reconciliation(sessions, hosts, fake, up_vm, make_nic, db):
    """The request reached the host but no answer came back: the host did plug the NIC, so rolling
    the row back would be a lie. It stays 'plugging' until the host's truth settles it."""
    nic = make_nic(up_vm, is_plugged=False)
    fake.unanswered = True
    with pytest.raises(HostUnreachable) as err:
        plug(sessions, hosts, up_vm, nic)
    assert err.value.outcome_unknown
    assert db.device_state(nic.id)[:2] == (True, "plugging")
    assert "stays plugging" in db.events(up_vm.id, code="HOST_UNREACHABLE")[0].message
    fake.unanswered = False
    assert f"ua-{nic.id}" in {d["alias"] for d in fake.call("VM.getDevices", {"vmId": up_vm.id})["devices"]}


def test_pending_unplug_stays_unplugging(sessions, hosts, fake, up_vm, make_nic, db):
    nic = make_nic(up_vm, is_plugged=False)
    plug(sessions, hosts, up_vm, nic)
    fake.pending_unplug = True
    out = plug(sessions, hosts, up_vm, nic, on=False)
    assert out.pending and out.id == nic.id
    is_plugged, state, address, _, _ = db.device_state(nic.id)
    # `plugged` is the desired state: false from the moment the unplug was asked for
    assert (is_plugged, state) == (False, "unplugging") and address is not None
    assert db.codes(up_vm.id)[-1] == "NIC_UNPLUG_PENDING"
    # what the monitor does when the agent reports device_removed
    event = fake.finish_unplug(up_vm.id, f"ua-{nic.id}")
    assert event["kind"] == "device_removed"
    with sessions.begin() as s:
        assert devices.finish_transition(s, nic.id, from_state="unplugging", is_plugged=False, address=None)
    assert db.device_state(nic.id)[:3] == (False, "stable", None)


def test_second_operation_on_an_in_flight_device_conflicts(sessions, hosts, fake, up_vm, make_nic, db):
    nic = make_nic(up_vm, is_plugged=False)
    plug(sessions, hosts, up_vm, nic)
    fake.pending_unplug = True
    plug(sessions, hosts, up_vm, nic, on=False)
    before, calls = db.device_state(nic.id), len(fake.calls)
    for on in (True, False):
        with pytest.raises(Conflict) as err:
            plug(sessions, hosts, up_vm, nic, on=on)
        assert err.value.code == "OPERATION_IN_FLIGHT" and err.value.status == 409
        assert [r.code for r in err.value.reasons] == ["DEVICE_IN_FLIGHT"]
    assert db.device_state(nic.id) == before
    assert len(fake.calls) == calls
    with pytest.raises(Conflict):
        remove_nic.execute(sessions, hosts, remove_nic.Params(up_vm.id, nic.id))
    with pytest.raises(Conflict):
        update_nic.execute(sessions, hosts, update_nic.Params(up_vm.id, nic.id, linked=False))
    assert db.device_state(nic.id) == before


def test_lost_compare_and_set_race_conflicts_and_changes_nothing(sessions, hosts, fake, up_vm, make_nic, db):
    """Two plugs read the device as stable; the second one's compare-and-set loses."""
    nic = make_nic(up_vm, is_plugged=False)
    started, release = threading.Event(), threading.Event()
    real_call = fake.call

    def slow_call(verb, params=None, **kw):
        started.set()
        release.wait(5)
        return real_call(verb, params, **kw)

    fake.call = slow_call
    errors: list[Exception] = []
    first = threading.Thread(target=lambda: plug(sessions, hosts, up_vm, nic))
    first.start()
    assert started.wait(5)
    assert db.device_state(nic.id)[1] == "plugging"
    try:
        plug(sessions, hosts, up_vm, nic)
    except Exception as exc:   # noqa: BLE001 - asserted below
        errors.append(exc)
    release.set()
    first.join(5)
    assert len(errors) == 1 and isinstance(errors[0], Conflict)
    assert db.device_state(nic.id)[:2] == (True, "stable")
    assert len(fake.sent("VM.hotplugNic")) == 1


def test_refusal_lists_every_reason_and_is_audited(sessions, hosts, fake, make_vm, host, make_cluster, make_nic, db):
    old = make_cluster(compat_version="3.0")
    vm = make_vm(status="up", host=host, cluster=old, os_type="windows_xp")
    nic = make_nic(vm, is_plugged=False, network="storage")
    with pytest.raises(ValidationFailed) as err:
        plug(sessions, hosts, vm, nic)
    assert [r.code for r in err.value.reasons] == ["OS_NIC_HOTPLUG_UNSUPPORTED", "CLUSTER_VERSION_HOTPLUG_UNSUPPORTED",
                                                   "NETWORK_NOT_ON_HOST"]
    assert fake.calls == []
    assert db.device_state(nic.id)[:2] == (False, "stable")
    [event] = db.events(vm.id)
    assert event.code == "NIC_PLUG_REFUSED" and len(event.vars["reasons"]) == 3


def test_plug_refused_when_the_mac_is_on_another_plugged_nic(sessions, hosts, down_vm, make_vm, make_nic, db):
    other_vm = make_vm()
    make_nic(other_vm, mac="56:6f:1a:00:00:99", is_plugged=True)
    nic = make_nic(down_vm, mac="56:6f:1a:00:00:99", is_plugged=False)
    with pytest.raises(ValidationFailed) as err:
        plug(sessions, hosts, down_vm, nic)
    assert [r.code for r in err.value.reasons] == ["MAC_IN_USE"]
    assert not db.device(nic.id).is_plugged


def test_unknown_ids_are_not_found(sessions, hosts, down_vm, make_nic):
    with pytest.raises(NotFound):
        plug_unplug_nic.execute(sessions, hosts, plug_unplug_nic.Params("nope", "nope", True))
    with pytest.raises(NotFound):
        plug_unplug_nic.execute(sessions, hosts, plug_unplug_nic.Params(down_vm.id, "nope", True))


# ---- add_nic --------------------------------------------------------------------------------------

def test_add_nic_to_down_vm(sessions, hosts, fake, down_vm, db):
    out = add_nic.execute(sessions, hosts, add_nic.Params(down_vm.id, "eth0", "br0"))
    assert out.created and not out.pending
    nic = db.nic(down_vm.id, out.id)
    assert nic.mac == "56:6f:1a:00:00:00" and nic.model == "pv" and nic.linked
    assert db.device_state(out.id)[:4] == (True, "stable", None, f"ua-{out.id}")
    assert fake.calls == []
    assert db.codes(down_vm.id) == ["NIC_ADDED"]


def test_add_nic_takes_the_next_free_pool_address(sessions, hosts, down_vm, db):
    first = add_nic.execute(sessions, hosts, add_nic.Params(down_vm.id, "eth0", "br0"))
    second = add_nic.execute(sessions, hosts, add_nic.Params(down_vm.id, "eth1", "br0", active=False))
    assert db.nic(down_vm.id, first.id).mac == "56:6f:1a:00:00:00"
    assert db.nic(down_vm.id, second.id).mac == "56:6f:1a:00:00:01"
    assert not db.device(second.id).is_plugged


def test_add_active_nic_to_running_vm_plugs_it(sessions, hosts, fake, up_vm, db):
    out = add_nic.execute(sessions, hosts, add_nic.Params(up_vm.id, "eth0", "br0", mac="56:6F:1A:00:10:01",
                                                          model="e1000"))
    assert out.created
    [sent] = fake.sent("VM.hotplugNic")
    assert sent["nic"]["alias"] == f"ua-{out.id}" and sent["nic"]["macAddr"] == "56:6f:1a:00:10:01"
    assert sent["nic"]["nicModel"] == "e1000"
    is_plugged, state, address, _, _ = db.device_state(out.id)
    assert (is_plugged, state) == (True, "stable") and address["type"] == "pci"
    assert db.codes(up_vm.id) == ["NIC_ADDED", "NIC_PLUGGED"]


def test_add_inactive_nic_to_running_vm_is_database_only(sessions, hosts, fake, up_vm, db):
    out = add_nic.execute(sessions, hosts, add_nic.Params(up_vm.id, "eth0", "storage", active=False))
    assert not db.device(out.id).is_plugged
    assert fake.calls == []


def test_add_nic_whose_plug_fails_is_kept_deactivated(sessions, hosts, fake, up_vm, db):
    fake.fail("VM.hotplugNic", 49)
    with pytest.raises(HostCallFailed):
        add_nic.execute(sessions, hosts, add_nic.Params(up_vm.id, "eth0", "br0"))
    with sessions.begin() as s:
        from engine.dao import nics
        [nic] = nics.list_for_vm(s, up_vm.id)
        assert (nic.device.is_plugged, nic.device.plug_state) == (False, "stable")
        assert nic.device.last_error["code"] == 49
    assert db.codes(up_vm.id) == ["NIC_ADDED", "NIC_PLUG_FAILED"]


def test_add_nic_refusal_adds_nothing(sessions, hosts, fake, up_vm, make_nic, db):
    make_nic(up_vm, "eth0")
    with pytest.raises(ValidationFailed) as err:
        add_nic.execute(sessions, hosts, add_nic.Params(up_vm.id, "eth0", "storage", model="ne2k"))
    assert [r.code for r in err.value.reasons] == ["NAME_IN_USE", "NIC_MODEL_UNSUPPORTED", "NETWORK_NOT_ON_HOST"]
    assert db.table_counts()["vm_nics"] == 1
    assert db.codes(up_vm.id) == ["NIC_ADD_REFUSED"]


# ---- update_nic -----------------------------------------------------------------------------------

def test_update_refused_while_plugged_on_running_vm(sessions, hosts, fake, up_vm, make_nic, db):
    nic = make_nic(up_vm, is_plugged=True)
    with pytest.raises(ValidationFailed) as err:
        update_nic.execute(sessions, hosts, update_nic.Params(up_vm.id, nic.id, network="br0", linked=False))
    assert [r.code for r in err.value.reasons] == ["NIC_PLUGGED_ON_RUNNING_VM"]
    assert db.nic(up_vm.id, nic.id).network == "ovirtmgmt" and db.nic(up_vm.id, nic.id).linked
    assert fake.calls == []
    assert db.codes(up_vm.id) == ["NIC_UPDATE_REFUSED"]


def test_link_state_update_goes_live(sessions, hosts, fake, up_vm, make_nic, db):
    nic = make_nic(up_vm, is_plugged=False)
    plug(sessions, hosts, up_vm, nic)
    update_nic.execute(sessions, hosts, update_nic.Params(up_vm.id, nic.id, linked=False))
    assert fake.sent("VM.updateNic") == [{"vmId": up_vm.id, "nic": {"alias": f"ua-{nic.id}", "linkActive": False}}]
    assert fake.domain(up_vm.id).find(alias=f"ua-{nic.id}")["linkActive"] is False
    assert db.nic(up_vm.id, nic.id).linked is False
    assert db.codes(up_vm.id)[-1] == "NIC_UPDATED"


def test_link_state_update_failure_changes_nothing(sessions, hosts, fake, up_vm, make_nic, db):
    nic = make_nic(up_vm, is_plugged=True)
    fake.fail("VM.updateNic", 304)
    with pytest.raises(HostCallFailed):
        update_nic.execute(sessions, hosts, update_nic.Params(up_vm.id, nic.id, linked=False))
    assert db.nic(up_vm.id, nic.id).linked is True
    assert db.events(up_vm.id)[-1].host_code == 304


def test_update_of_a_down_vm_nic_is_database_only(sessions, hosts, fake, down_vm, make_nic, db):
    nic = make_nic(down_vm, is_plugged=True)
    update_nic.execute(sessions, hosts, update_nic.Params(down_vm.id, nic.id, name="lan", network="br0",
                                                          model="rtl8139", mac="56:6F:1A:00:20:00", linked=False))
    got = db.nic(down_vm.id, nic.id)
    assert (got.name, got.network, got.model, got.mac, got.linked) == \
        ("lan", "br0", "rtl8139", "56:6f:1a:00:20:00", False)
    assert fake.calls == []
    [event] = db.events(down_vm.id)
    assert event.code == "NIC_UPDATED" and set(event.vars["changes"]) == {"name", "network", "model", "mac", "linked"}


def test_update_of_an_unplugged_nic_on_running_vm(sessions, hosts, fake, up_vm, make_nic, db):
    nic = make_nic(up_vm, is_plugged=False)
    update_nic.execute(sessions, hosts, update_nic.Params(up_vm.id, nic.id, network="br0", linked=False))
    assert db.nic(up_vm.id, nic.id).network == "br0"
    assert fake.calls == []


# ---- remove_nic -----------------------------------------------------------------------------------

def test_remove_nic_of_down_vm(sessions, hosts, down_vm, make_nic, db):
    nic = make_nic(down_vm, is_plugged=True)
    remove_nic.execute(sessions, hosts, remove_nic.Params(down_vm.id, nic.id))
    assert db.device(nic.id) is None and db.nic(down_vm.id, nic.id) is None
    assert db.codes(down_vm.id) == ["NIC_REMOVED"]


def test_remove_deactivated_nic_of_running_vm(sessions, hosts, up_vm, make_nic, db):
    nic = make_nic(up_vm, is_plugged=False)
    remove_nic.execute(sessions, hosts, remove_nic.Params(up_vm.id, nic.id))
    assert db.device(nic.id) is None


def test_remove_plugged_nic_of_running_vm_is_refused(sessions, hosts, up_vm, make_nic, db):
    nic = make_nic(up_vm, is_plugged=True)
    with pytest.raises(ValidationFailed) as err:
        remove_nic.execute(sessions, hosts, remove_nic.Params(up_vm.id, nic.id))
    assert [r.code for r in err.value.reasons] == ["NIC_PLUGGED_ON_RUNNING_VM"]
    assert db.device(nic.id) is not None
    assert db.codes(up_vm.id) == ["NIC_REMOVE_REFUSED"]


def test_deactivate_then_remove_on_running_vm(sessions, hosts, fake, up_vm, make_nic, db):
    nic = make_nic(up_vm, is_plugged=False)
    plug(sessions, hosts, up_vm, nic)
    plug(sessions, hosts, up_vm, nic, on=False)
    remove_nic.execute(sessions, hosts, remove_nic.Params(up_vm.id, nic.id))
    assert db.device(nic.id) is None
