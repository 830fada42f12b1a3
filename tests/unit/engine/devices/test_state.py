"""The device core's named transitions, on a real database: each is a compare-and-set that writes one
audit record when it wins and nothing when it loses, keeps `is_plugged` the desired state, and takes
or gives back the kind's claim (a NIC's MAC, a host device)."""
from __future__ import annotations

import concurrent.futures
import time

import pytest
from sqlalchemy.exc import IntegrityError

from engine.dao import audit, devices, host_devices, nics
from engine.dao.models import VmDevice, VmNic
from engine.devices import state
from engine.errors import Conflict


def subject_of(sessions, dev_id, host=None):
    with sessions() as s:
        dev = devices.get(s, dev_id)
        return state.Subject.of(dev, dev.vm, host)


def codes(sessions, vm_id):
    with sessions() as s:
        return [e.code for e in audit.list(s, vm_id=vm_id)]


def row(sessions, model, ident):
    with sessions() as s:
        return s.get(model, ident)


def test_begin_sets_the_desired_state_and_a_second_begin_conflicts(sessions, make_vm, make_nic):
    vm = make_vm(status="up")
    nic = make_nic(vm, is_plugged=False)
    subject = subject_of(sessions, nic.id)
    with sessions.begin() as s:
        before = state.begin(s, subject, plug=True)
    assert before.is_plugged is False
    dev = row(sessions, VmDevice, nic.id)
    assert (dev.is_plugged, dev.plug_state) == (True, "plugging")
    assert row(sessions, VmNic, nic.id).claimed_mac == nic.mac
    with pytest.raises(Conflict), sessions.begin() as s:
        state.begin(s, subject, plug=False)
    assert codes(sessions, vm.id) == []          # beginning is not an outcome: nothing audited yet


def test_a_lost_finish_writes_nothing(sessions, make_vm, make_nic):
    vm = make_vm(status="up")
    nic = make_nic(vm, is_plugged=True, plug_state="unplugging")
    subject = subject_of(sessions, nic.id)
    with sessions.begin() as s:
        assert state.unplugged(s, subject) is True
    with sessions.begin() as s:
        assert state.unplugged(s, subject) is False      # e.g. the monitor's event after the command
    assert codes(sessions, vm.id) == ["NIC_UNPLUGGED"]
    assert row(sessions, VmNic, nic.id).claimed_mac is None


def test_plug_failed_goes_back_to_unplugged_with_the_error_and_gives_the_mac_back(sessions, make_vm, make_nic):
    vm = make_vm(status="up")
    nic = make_nic(vm, is_plugged=False)
    subject = subject_of(sessions, nic.id)
    with sessions.begin() as s:
        state.begin(s, subject, plug=True)
    with sessions.begin() as s:
        assert state.plug_failed(s, subject, {"code": 49}, "refused")
    dev = row(sessions, VmDevice, nic.id)
    assert (dev.is_plugged, dev.plug_state, dev.last_error) == (False, "stable", {"code": 49})
    assert row(sessions, VmNic, nic.id).claimed_mac is None
    assert codes(sessions, vm.id) == ["NIC_PLUG_FAILED"]


def test_rolled_back_restores_the_row_exactly(sessions, make_vm, make_nic):
    vm = make_vm(status="up")
    nic = make_nic(vm, is_plugged=True, last_error={"code": 50})
    subject = subject_of(sessions, nic.id)
    with sessions.begin() as s:
        before = state.begin(s, subject, plug=False)
    with sessions.begin() as s:
        assert state.rolled_back(s, subject, plug=False, before=before, message="unreachable")
    dev = row(sessions, VmDevice, nic.id)
    assert (dev.is_plugged, dev.plug_state, dev.last_error) == (True, "stable", {"code": 50})
    assert row(sessions, VmNic, nic.id).claimed_mac == nic.mac
    assert codes(sessions, vm.id) == ["HOST_UNREACHABLE"]


def test_a_mac_claimed_by_another_nic_refuses_the_plug_and_changes_nothing(sessions, make_vm, make_nic):
    make_nic(make_vm(status="up"), mac="02:00:00:00:bb:01")
    vm = make_vm(status="up")
    twin = make_nic(vm, mac="02:00:00:00:bb:01", is_plugged=False)
    with pytest.raises(Conflict) as err, sessions.begin() as s:
        state.begin(s, subject_of(sessions, twin.id), plug=True)
    assert [r.code for r in err.value.reasons] == ["MAC_IN_USE"]
    dev = row(sessions, VmDevice, twin.id)
    assert (dev.is_plugged, dev.plug_state) == (False, "stable")


def test_a_repair_whose_mac_claim_loses_a_race_is_still_recorded(sessions, make_vm, make_nic):
    """The monitor finds a NIC on the wire while another NIC's plug, not yet committed, claims the
    same MAC. On PostgreSQL the repair's claim then fails on the unique constraint after waiting for
    that commit (SQLite: its guard sees the claim); the repair goes on all the same and says why."""
    other = make_nic(make_vm(status="up"), mac="02:00:00:00:bb:02", is_plugged=False)
    vm = make_vm(status="up")
    twin = make_nic(vm, mac="02:00:00:00:bb:02", is_plugged=False)
    subject = subject_of(sessions, twin.id)
    claimer = sessions()
    claimer.begin()
    assert nics.claim_mac(claimer, other.id)                  # held, uncommitted

    def repair():
        with sessions.begin() as s:
            return state.repaired(s, subject, plug=True, address=None)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        repairing = pool.submit(repair)
        time.sleep(0.3)                                      # the repair is waiting for the claimer
        claimer.commit()
        claimer.close()
        assert repairing.result(timeout=10) is True
    dev = row(sessions, VmDevice, twin.id)
    assert (dev.is_plugged, dev.plug_state) == (True, "stable")
    assert row(sessions, VmNic, twin.id).claimed_mac is None
    assert row(sessions, VmNic, other.id).claimed_mac == "02:00:00:00:bb:02"
    with sessions() as s:
        [repaired] = audit.list(s, vm_id=vm.id)
    assert repaired.code == "NIC_STATE_REPAIRED" and "02:00:00:00:bb:02" in repaired.message


def test_vm_stopped_settles_every_transition_in_flight_once(sessions, make_vm, make_nic):
    vm = make_vm(status="up")
    leaving = make_nic(vm, is_plugged=False, plug_state="unplugging")
    arriving = make_nic(vm, is_plugged=True, plug_state="plugging")
    with sessions.begin() as s:
        assert state.vm_stopped(s, s.get(type(vm), vm.id), "VM stopped")
    with sessions.begin() as s:
        assert not state.vm_stopped(s, s.get(type(vm), vm.id), "VM stopped again")
    assert row(sessions, type(vm), vm.id).status == "down"
    assert (row(sessions, VmDevice, leaving.id).plug_state, row(sessions, VmDevice, leaving.id).is_plugged) == \
        ("stable", False)
    assert (row(sessions, VmDevice, arriving.id).plug_state, row(sessions, VmDevice, arriving.id).is_plugged) == \
        ("stable", False)
    assert sorted(codes(sessions, vm.id)) == ["NIC_PLUG_FAILED", "NIC_UNPLUGGED", "VM_STOPPED"]


def _host_device(sessions, host):
    with sessions.begin() as s:
        host_devices.sync(s, host.id, [{"name": "usb_1_4", "capability": "usb_device",
                                                    "vendorId": "136b", "productId": "0003", "allowed": True}])
    with sessions() as s:
        return host_devices.get_by_name(s, host.id, "usb_1_4").id


def _hostdev(sessions, vm, hd_id):
    with sessions.begin() as s:
        return devices.add(s, vm.id, type="hostdev", device="usb", is_plugged=False, host_device_id=hd_id,
                           spec_params={"source": {"portPath": "1-4"}}).id


def test_a_host_device_is_claimed_allocated_and_released_with_its_row(sessions, make_host, make_vm):
    host = make_host()
    hd_id = _host_device(sessions, host)
    vm = make_vm(status="up", host=host)
    dev_id = _hostdev(sessions, vm, hd_id)
    subject = subject_of(sessions, dev_id)
    with sessions.begin() as s:
        state.begin(s, subject, plug=True)
    with sessions() as s:
        assert (host_devices.get(s, hd_id).status, host_devices.get(s, hd_id).vm_id) == ("claimed", vm.id)
    with sessions.begin() as s:
        state.plugged(s, subject, {"type": "usb", "bus": "0", "port": "1"})
    with sessions() as s:
        assert host_devices.get(s, hd_id).status == "allocated"
    with sessions.begin() as s:
        state.begin(s, subject, plug=False)
    with sessions.begin() as s:
        state.unplugged(s, subject)
    with sessions() as s:
        assert (host_devices.get(s, hd_id).status, host_devices.get(s, hd_id).vm_id) == ("available", None)


def test_a_host_device_another_vm_holds_refuses_the_plug(sessions, make_host, make_vm):
    host = make_host()
    hd_id = _host_device(sessions, host)
    first, second = make_vm(status="up", host=host), make_vm(status="up", host=host)
    with sessions.begin() as s:
        host_devices.claim(s, hd_id, first.id)
    dev_id = _hostdev(sessions, second, hd_id)     # linking is allowed; plugging is what claims
    with pytest.raises(Conflict) as err, sessions.begin() as s:
        state.begin(s, subject_of(sessions, dev_id), plug=True)
    assert [r.code for r in err.value.reasons] == ["HOST_DEVICE_BUSY"]
    assert row(sessions, VmDevice, dev_id).plug_state == "stable"


def test_one_host_device_backs_one_vm_device_at_most(sessions, make_host, make_vm):
    host = make_host()
    hd_id = _host_device(sessions, host)
    vm = make_vm()
    _hostdev(sessions, vm, hd_id)
    with pytest.raises(IntegrityError), sessions.begin() as s:
        devices.add(s, vm.id, type="hostdev", device="usb", host_device_id=hd_id)
