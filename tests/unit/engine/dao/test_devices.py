"""The plug state machine's compare-and-set transitions."""
from __future__ import annotations


import pytest

from engine.dao import db, devices, nics, vms
from engine.dao.devices import KEEP
from engine.dao.models import VmDevice, VmNic
from engine.dao.vm_versions import VmVersion
from tests.unit.engine.race import race

ADDRESS = {"type": "pci", "domain": "0x0000", "bus": "0x00", "slot": "0x03", "function": "0x0"}


def _row(sessions, dev_id) -> VmDevice:
    with sessions() as s:
        return s.get(VmDevice, dev_id)


def test_begin_transition_moves_a_stable_device_and_stamps_the_start(sessions, make_vm, make_nic):
    nic = make_nic(make_vm(status="up"), is_plugged=False)
    with sessions.begin() as s:
        assert devices.begin_transition(s, nic.id, "plugging") is True
    row = _row(sessions, nic.id)
    # is_plugged is the desired state: it changes when the transition begins
    assert (row.plug_state, row.is_plugged) == ("plugging", True)
    assert row.plug_started_at is not None


def test_second_begin_on_an_in_flight_device_returns_false_and_changes_nothing(sessions, make_vm, make_nic):
    nic = make_nic(make_vm(status="up"), is_plugged=True, address=ADDRESS)
    with sessions.begin() as s:
        assert devices.begin_transition(s, nic.id, "unplugging")
    before = _row(sessions, nic.id)
    with sessions.begin() as s:
        assert devices.begin_transition(s, nic.id, "unplugging") is False
        assert devices.begin_transition(s, nic.id, "plugging") is False
        assert devices.set_plugged(s, nic.id, False) is False
    after = _row(sessions, nic.id)
    for column in ("plug_state", "plug_started_at", "is_plugged", "address", "last_error"):
        assert getattr(after, column) == getattr(before, column), column


def test_begin_transition_on_a_missing_device_is_false(sessions):
    with sessions.begin() as s:
        assert devices.begin_transition(s, "no-such-device", "plugging") is False


def test_begin_transition_refuses_an_unknown_state(sessions, make_vm, make_nic):
    nic = make_nic(make_vm())
    with sessions.begin() as s, pytest.raises(ValueError):
        devices.begin_transition(s, nic.id, "stable")


def test_a_loaded_object_sees_the_transition(sessions, make_vm, make_nic):
    nic = make_nic(make_vm(status="up"), is_plugged=False)
    with sessions.begin() as s:
        row = s.get(VmDevice, nic.id)
        assert row.plug_state == "stable"
        assert devices.begin_transition(s, nic.id, "plugging")
        assert row.plug_state == "plugging"


def test_finish_plug_stores_the_address_and_clears_the_error(sessions, make_vm, make_nic):
    nic = make_nic(make_vm(status="up"), is_plugged=False)
    with sessions.begin() as s:
        devices.begin_transition(s, nic.id, "plugging")
    with sessions.begin() as s:
        assert devices.finish_transition(s, nic.id, from_state="plugging", is_plugged=True, address=ADDRESS)
    row = _row(sessions, nic.id)
    assert (row.plug_state, row.is_plugged, row.address, row.plug_started_at, row.last_error) == \
        ("stable", True, ADDRESS, None, None)


def test_finish_unplug_clears_the_address(sessions, make_vm, make_nic):
    nic = make_nic(make_vm(status="up"), address=ADDRESS)
    with sessions.begin() as s:
        devices.begin_transition(s, nic.id, "unplugging")
        assert devices.finish_transition(s, nic.id, from_state="unplugging", is_plugged=False, address=None)
    row = _row(sessions, nic.id)
    assert (row.plug_state, row.is_plugged, row.address) == ("stable", False, None)
    with sessions() as s:      # stored as SQL NULL, not JSON null
        assert s.query(VmDevice).filter(VmDevice.id == nic.id, VmDevice.address.is_(None)).count() == 1


def test_failed_unplug_keeps_the_address_and_records_the_error(sessions, make_vm, make_nic):
    nic = make_nic(make_vm(status="up"), address=ADDRESS)
    error = {"code": 50, "message": "Failed to hotunplug NIC"}
    with sessions.begin() as s:
        devices.begin_transition(s, nic.id, "unplugging")
        assert devices.finish_transition(s, nic.id, from_state="unplugging", is_plugged=True, address=KEEP,
                                         error=error)
    row = _row(sessions, nic.id)
    assert (row.plug_state, row.is_plugged, row.address, row.last_error) == ("stable", True, ADDRESS, error)


def test_finish_from_the_wrong_state_changes_nothing(sessions, make_vm, make_nic):
    nic = make_nic(make_vm(status="up"), address=ADDRESS)
    with sessions.begin() as s:
        assert devices.finish_transition(s, nic.id, from_state="unplugging", is_plugged=False,
                                         address=None) is False
        devices.begin_transition(s, nic.id, "plugging")
        assert devices.finish_transition(s, nic.id, from_state="unplugging", is_plugged=False,
                                         address=None) is False
    row = _row(sessions, nic.id)
    assert (row.plug_state, row.is_plugged, row.address) == ("plugging", True, ADDRESS)


def test_finish_twice_only_the_first_wins(sessions, make_vm, make_nic):
    """An event and the command's own answer may both try to finish one unplug."""
    nic = make_nic(make_vm(status="up"), address=ADDRESS)
    with sessions.begin() as s:
        devices.begin_transition(s, nic.id, "unplugging")
    with sessions.begin() as s:
        assert devices.finish_transition(s, nic.id, from_state="unplugging", is_plugged=False, address=None)
    with sessions.begin() as s:
        assert not devices.finish_transition(s, nic.id, from_state="unplugging", is_plugged=True,
                                             error={"code": 50})
    assert _row(sessions, nic.id).is_plugged is False


def test_a_finish_writes_its_other_rows_only_when_it_wins_and_in_one_statement(sessions, make_vm, make_nic):
    """`also` (the MAC's release) goes with the compare-and-set that wins, in its statement on
    PostgreSQL, and is not written by one that lost; a copy of the NIC row the session holds follows."""
    nic = make_nic(make_vm(status="up"), address=ADDRESS)
    with sessions.begin() as s:
        assert nics.claim_mac(s, nic.id)
        devices.begin_transition(s, nic.id, "unplugging")
    with sessions() as s, db.one_statement(s):
        held = s.get(VmNic, nic.id)
        assert held.claimed_mac == held.mac
        assert not devices.finish_transition(s, nic.id, from_state="plugging", is_plugged=False,
                                             also=[nics.RELEASE_MAC])
    with sessions() as s:
        assert s.get(VmNic, nic.id).claimed_mac is not None     # the finish that lost released nothing
    with sessions() as s, db.one_statement(s):
        held = s.get(VmNic, nic.id)
        assert devices.finish_transition(s, nic.id, from_state="unplugging", is_plugged=False, address=None,
                                         also=[nics.RELEASE_MAC])
        assert held.claimed_mac is None
    with sessions() as s:
        assert s.get(VmNic, nic.id).claimed_mac is None
        assert _row(sessions, nic.id).plug_state == "stable"


def test_a_row_write_sets_plain_columns_only():
    with pytest.raises(ValueError):
        devices.RowWrite(nics.RELEASE_MAC.update, {"claimed_mac": None, "mac": "x"})


def test_set_plugged_on_a_down_vm_and_set_address(sessions, make_vm, make_nic):
    nic = make_nic(make_vm(), address=ADDRESS)
    with sessions.begin() as s:
        assert devices.set_plugged(s, nic.id, False, address=None)
    assert (_row(sessions, nic.id).is_plugged, _row(sessions, nic.id).address) == (False, None)
    with sessions.begin() as s:
        assert devices.set_address(s, nic.id, ADDRESS)
    assert _row(sessions, nic.id).address == ADDRESS


def test_list_for_vm_filters_and_list_in_flight(sessions, make_vm, make_nic):
    vm = make_vm(status="up")
    a = make_nic(vm, "a")
    b = make_nic(vm, "b", is_plugged=False)
    with sessions.begin() as s:
        hostdev = devices.add(s, vm.id, type="hostdev", device="usb")
        assert hostdev.alias == f"ua-{hostdev.id}"
        devices.begin_transition(s, b.id, "plugging")
    with sessions() as s:
        assert {d.id for d in devices.list_for_vm(s, vm.id)} == {a.id, b.id, hostdev.id}
        assert {d.id for d in devices.list_for_vm(s, vm.id, type="interface")} == {a.id, b.id}
        assert {d.id for d in devices.list_for_vm(s, vm.id, plugged=False)} == set()
        assert {d.id for d in devices.list_for_vm(s, vm.id, plugged=True)} == {a.id, b.id, hostdev.id}
        assert [d.id for d in devices.list_in_flight(s)] == [b.id]
        found_vm, found = vms.get_with_device_by_alias(s, vm.id, f"ua-{a.id}")
        assert found_vm.id == vm.id and found.id == a.id and found.nic.name == "a"
        assert vms.get_with_device_by_alias(s, vm.id, "ua-none")[1] is None


@pytest.mark.parametrize("round_", range(5))
def test_two_threads_racing_exactly_one_wins(sessions, make_vm, make_nic, round_):
    nic = make_nic(make_vm(status="up"), is_plugged=False)

    def attempt() -> bool:
        with sessions.begin() as s:
            return devices.begin_transition(s, nic.id, "plugging")

    results = race(2, lambda _: attempt())
    assert sorted(results, key=repr) == [False, True]
    assert _row(sessions, nic.id).plug_state == "plugging"


def test_read_then_cas_race_with_immediate_transactions(tmp_path, make_vm, make_nic, db_url):
    """A command reads (canDo) and then compare-and-sets in one transaction. On SQLite that needs
    sqlite_begin="immediate"; the loser then waits for the lock and sees the winner's state. On
    PostgreSQL (where the setting does nothing) the row lock of the UPDATE gives the same answer."""
    nic = make_nic(make_vm(status="up"), is_plugged=False)
    engine = db.make_engine(db_url, sqlite_begin="immediate")
    sessions = db.make_sessions(engine)

    def attempt() -> bool:
        with sessions.begin() as s:
            row = devices.get(s, nic.id)
            if row.plug_state != "stable":
                return False
            return devices.begin_transition(s, nic.id, "plugging")

    try:
        for _ in range(5):
            results = race(4, lambda _: attempt())
            assert sorted(results, key=repr) == [False, False, False, True]
            with sessions.begin() as s:
                devices.finish_transition(s, nic.id, from_state="plugging", is_plugged=False)
    finally:
        engine.dispose()


# ---- the version of a VM's device set ----------------------------------------------------------------

def _version(sessions, vm_id) -> int:
    with sessions() as s:
        return vms.get(s, vm_id).device_seq


def test_every_lock_of_a_vm_moves_its_device_version_and_a_plain_read_does_not(sessions, make_vm, make_nic):
    vm = make_vm(status="up")
    nic = make_nic(vm)
    assert _version(sessions, vm.id) == 0
    with sessions.begin() as s:
        vms.get(s, vm.id, for_update=True)
    with sessions.begin() as s:
        vms.get_with_device(s, vm.id, nic.id)
    assert _version(sessions, vm.id) == 2
    with sessions.begin() as s:
        loaded, dev = vms.get_with_device(s, vm.id, nic.id, locked=False)
        assert (loaded.device_seq, dev.id) == (2, nic.id)
    with sessions() as s, s.begin():
        vms.lock(s, vm.id)
        s.rollback()            # a refused command's lock leaves no trace
    assert _version(sessions, vm.id) == 2


@pytest.mark.parametrize("case", ["current", "moved", "stopped", "elsewhere"])
def test_a_begin_from_an_unlocked_read_takes_place_only_while_that_read_is_current(sessions, make_vm, make_host,
                                                                                   make_nic, case):
    """begin_transition's `unchanged` (PostgreSQL): the begin, the MAC's claim and the move of the VM's
    version, all or nothing. SQLite has no data-modifying WITH: the engine never asks it there."""
    host, other = make_host(), make_host()
    vm = make_vm(status="up", host=host)
    nic = make_nic(vm, is_plugged=False)
    seen = VmVersion(vm.id, 0, other.id if case == "elsewhere" else host.id)
    if case == "moved":
        with sessions.begin() as s:
            vms.lock(s, vm.id)
    if case == "stopped":
        with sessions.begin() as s:
            vms.set_status_cas(s, vm.id, ("up",), "down", run_on_host=None)
    version = _version(sessions, vm.id)
    claim = (nics.CLAIM_MAC,)
    with sessions.begin() as s:
        if db.is_sqlite(s.get_bind().engine):
            with pytest.raises(ValueError):
                devices.begin_transition(s, nic.id, "plugging", unchanged=seen)
            return
        began = devices.begin_transition(s, nic.id, "plugging", also=claim, unchanged=seen)
    row = _row(sessions, nic.id)
    with sessions() as s:
        claimed = s.get(VmNic, nic.id).claimed_mac
    if case == "current":
        assert began is True
        assert (row.plug_state, row.is_plugged, claimed) == ("plugging", True, nic.mac)
        assert _version(sessions, vm.id) == version + 1
    else:
        assert began is False
        assert (row.plug_state, row.is_plugged, claimed) == ("stable", False, None)
        assert _version(sessions, vm.id) == version
