"""A VM's USB devices at its start: an optional one gone from the host is left out (one warning, the
VM runs), a required one refuses the start -- from canDo when the inventory knows, from the host's
hostdevRequiredMissing when only the host does."""
from __future__ import annotations

import pytest

from engine.commands import run_vm
from engine.dao import host_devices
from engine.dao.models import Vm
from engine.errors import ValidationFailed
from tests.unit.engine.commands.refusals import refused
from tests.unit.engine.commands.test_hostdevs import attach, inventory, usb


def pulled(sessions, host, items=()):
    """The host's inventory after its key was pulled."""
    with sessions.begin() as s:
        host_devices.sync(s, host.id, list(items))


def sent_hostdevs(fake) -> list[dict]:
    (create,) = fake.sent("VM.create")
    return [d for d in create["params"]["devices"] if d["type"] == "hostdev"]


def test_validate_names_each_required_device_that_is_gone(sessions, host, down_vm):
    (key,) = inventory(sessions, host, usb())
    with sessions() as s:
        gone = host_devices.get(s, key)
        vm = s.get(Vm, down_vm.id)
        found = run_vm.validate(run_vm.Params(down_vm.id), vm=vm, cluster=None, host=None, networks=[],
                                in_flight=[], required_missing=[gone])
    reason = found[0]
    assert reason.code == "HOST_DEVICE_REQUIRED_MISSING"
    assert "0781:5567" in reason.message and "1-2" in reason.message


def test_a_required_device_gone_refuses_the_start_before_the_host_is_called(sessions, hosts, fake, host,
                                                                              down_vm, db):
    (key,) = inventory(sessions, host, usb())
    attach(sessions, hosts, down_vm, key, required=True)
    pulled(sessions, host)
    got = refused(sessions, db, fake, "VM_START", lambda: run_vm.execute(sessions, hosts, run_vm.Params(down_vm.id)),
                  "HOST_DEVICE_REQUIRED_MISSING")
    assert got.reasons[0].vars["device"].startswith(f"{key} (0781:5567")


def test_an_optional_device_gone_is_left_out_and_the_vm_runs(sessions, hosts, fake, host, down_vm, db):
    (key, other) = inventory(sessions, host, usb(), usb("usb_1_6", port="1-3", serial="K2"))
    dropped = attach(sessions, hosts, down_vm, key)
    kept = attach(sessions, hosts, down_vm, other)
    pulled(sessions, host, [usb("usb_1_6", port="1-3", serial="K2")])
    run_vm.execute(sessions, hosts, run_vm.Params(down_vm.id))
    assert [d["alias"] for d in sent_hostdevs(fake)] == [f"ua-{kept.id}"]
    assert db.vm(down_vm.id).status == "up"
    (event,) = [e for e in db.events() if e.code == "HOSTDEV_DROPPED"]
    assert (event.vm_id, event.device_id, event.severity) == (down_vm.id, dropped.id, "warning")
    assert db.device(dropped.id).is_plugged        # it waits for its device, which a replug brings back


def test_a_required_device_only_the_host_finds_gone_is_the_same_refusal(sessions, hosts, fake, host, down_vm, db):
    (key,) = inventory(sessions, host, usb())
    dev = attach(sessions, hosts, down_vm, key, required=True)
    fake.fail("VM.create", "hostdevRequiredMissing", f"ua-{dev.id}: no USB device at port 1-2")
    with pytest.raises(ValidationFailed) as err:
        run_vm.execute(sessions, hosts, run_vm.Params(down_vm.id))
    assert [r.code for r in err.value.reasons] == ["HOST_DEVICE_REQUIRED_MISSING"]
    assert err.value.reasons[0].vars["device"].startswith(f"{key} (")
    assert err.value.host_code == 317
    assert db.vm(down_vm.id).status == "down"
    assert "VM_START_FAILED" in db.codes(down_vm.id)
