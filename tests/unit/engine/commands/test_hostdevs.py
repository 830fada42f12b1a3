"""USB host devices through the engine: attach to running and stopped VMs, one VM per device, the
host a VM is pinned to, detach, and the failure paths (issue: USB host devices end to end)."""
from __future__ import annotations

import pytest

from engine.auth import MEMBER, Principal
from engine.commands import add_hostdev, plug_unplug_hostdev, remove_hostdev, remove_vm, run_vm
from engine.dao import devices, host_devices
from engine.errors import Conflict, EngineError, Forbidden, HostCallFailed
from tests.unit.engine.commands.refusals import refused
from tests.unit.engine.race import race


def usb(name="usb_1_5", port="1-2", serial="K1", allowed=True, **kw):
    return {"name": name, "capability": "usb_device", "vendorId": "0781", "productId": "5567", "portPath": port,
            "serial": serial, "allowed": allowed, **kw}


def inventory(sessions, host, *items) -> list[int]:
    with sessions.begin() as s:
        return host_devices.sync(s, host.id, list(items)).added


def hd(sessions, hd_id):
    with sessions() as s:
        return host_devices.get(s, hd_id)


def attach(sessions, hosts, vm, hd_id, **kw):
    return add_hostdev.execute(sessions, hosts, add_hostdev.Params(vm.id, hd_id, **kw))


def test_cold_attach_to_a_stopped_vm_is_in_its_definition_and_goes_with_it_at_start(sessions, hosts, fake, host,
                                                                                    down_vm, db):
    (key,) = inventory(sessions, host, usb())
    out = attach(sessions, hosts, down_vm, key)
    assert fake.calls == []                                     # a definition change only
    assert (hd(sessions, key).status, hd(sessions, key).vm_id) == ("allocated", down_vm.id)
    row = db.device(out.id)
    assert (row.is_plugged, row.host_device_id) == (True, key)
    run_vm.execute(sessions, hosts, run_vm.Params(down_vm.id))
    (create,) = fake.sent("VM.create")
    (sent,) = [d for d in create["params"]["devices"] if d["type"] == "hostdev"]
    assert sent == {"type": "hostdev", "device": "usb", "alias": f"ua-{out.id}", "source": {"portPath": "1-2"},
                    "startupPolicy": "optional"}


def test_live_attach_plugs_it_and_allocates_it(sessions, hosts, fake, host, up_vm, db):
    (key,) = inventory(sessions, host, usb())
    out = attach(sessions, hosts, up_vm, key, required=True)
    (sent,) = fake.sent("VM.hotplugHostdev")
    assert sent["hostdev"]["source"] == {"portPath": "1-2"} and sent["hostdev"]["startupPolicy"] == "mandatory"
    assert hd(sessions, key).status == "allocated"
    assert db.device(out.id).plug_state == "stable" and db.device(out.id).is_plugged


def test_a_failed_live_attach_gives_the_device_back_with_its_error(sessions, hosts, fake, host, up_vm, db):
    (key,) = inventory(sessions, host, usb())
    fake.fail("VM.hotplugHostdev", "hostdevPlugFailed")
    with pytest.raises(HostCallFailed):
        attach(sessions, hosts, up_vm, key)
    row = hd(sessions, key)
    assert (row.status, row.vm_id) == ("available", None)
    assert row.last_error["verb"] == "VM.hotplugHostdev"
    assert "HOSTDEV_PLUG_FAILED" in db.codes(up_vm.id)


@pytest.mark.parametrize("case, code", [
    ("unknown", "HOST_DEVICE_NOT_FOUND"), ("pci", "HOST_DEVICE_CAPABILITY"),
    ("not whitelisted", "HOST_DEVICE_NOT_ALLOWED"), ("gone", "HOST_DEVICE_BUSY"),
])
def test_what_cannot_be_attached(sessions, hosts, fake, host, up_vm, db, case, code):
    pci = {"name": "pci_0000_01_00_0", "capability": "pci", "vendorId": "8086", "productId": "10d3",
           "pciAddress": "0000:01:00.0", "allowed": True}
    ids = inventory(sessions, host, usb(), usb("usb_1_6", port="1-3", serial="K2", allowed=False), pci)
    by_case = {"unknown": 999999, "pci": ids[2], "not whitelisted": ids[1], "gone": ids[0]}
    if case == "gone":
        with sessions.begin() as s:
            host_devices.sync(s, host.id, [usb("usb_1_6", port="1-3", serial="K2", allowed=False), pci])
    got = refused(sessions, db, fake, "HOSTDEV_ADD", lambda: attach(sessions, hosts, up_vm, by_case[case]), code,
                  *(["HOST_DEVICE_GONE"] if case == "gone" else []))
    assert got.reasons[0].vars


def test_a_device_of_another_host_is_refused_and_a_stopped_vm_is_pinned(sessions, hosts, fake, host, make_host,
                                                                        up_vm, down_vm, db):
    other = make_host("host2")
    (far,) = inventory(sessions, other, usb("usb_3_1", port="3-1", serial="F"))
    (near,) = inventory(sessions, host, usb())
    refused(sessions, db, fake, "HOSTDEV_ADD", lambda: attach(sessions, hosts, up_vm, far),
            "HOST_DEVICE_ON_OTHER_HOST")
    attach(sessions, hosts, down_vm, near)                   # pins down_vm to host1
    (far2,) = inventory(sessions, other, usb("usb_3_2", port="3-2", serial="G"))
    refused(sessions, db, fake, "HOSTDEV_ADD", lambda: attach(sessions, hosts, down_vm, far2),
            "HOST_DEVICE_ON_OTHER_HOST")
    with pytest.raises(EngineError) as err:                  # seed 001: a VM with a USB device does not move
        run_vm.execute(sessions, hosts, run_vm.Params(down_vm.id, host_id=other.id))
    assert "HOST_DEVICES_PIN_VM" in [r.code for r in err.value.reasons]


def test_raw_assignment_is_for_admins(sessions, hosts, host, down_vm):
    (key,) = inventory(sessions, host, usb())
    member = Principal("m", roles=frozenset({MEMBER}), projects=frozenset({down_vm.project_id}))
    with pytest.raises(Forbidden):
        add_hostdev.execute(sessions, hosts, add_hostdev.Params(down_vm.id, key), principal=member)
    assert hd(sessions, key).status == "available"


def test_detach_from_a_stopped_vm_frees_the_device(sessions, hosts, fake, host, down_vm, db):
    (key,) = inventory(sessions, host, usb())
    out = attach(sessions, hosts, down_vm, key)
    remove_hostdev.execute(sessions, hosts, remove_hostdev.Params(down_vm.id, out.id))
    assert db.device(out.id) is None and hd(sessions, key).status == "available"


def test_a_plugged_device_of_a_running_vm_is_deactivated_before_it_is_detached(sessions, hosts, fake, host,
                                                                              up_vm, db):
    (key,) = inventory(sessions, host, usb())
    out = attach(sessions, hosts, up_vm, key)
    refused(sessions, db, fake, "HOSTDEV_REMOVE",
            lambda: remove_hostdev.execute(sessions, hosts, remove_hostdev.Params(up_vm.id, out.id)),
            "PLUGGED_ON_RUNNING_VM")
    plug_unplug_hostdev.execute(sessions, hosts, plug_unplug_hostdev.Params(up_vm.id, out.id, False))
    assert hd(sessions, key).status == "available"              # unplugged: given back at once
    remove_hostdev.execute(sessions, hosts, remove_hostdev.Params(up_vm.id, out.id))
    assert db.device(out.id) is None


def test_removing_a_vm_frees_its_devices(sessions, hosts, host, down_vm):
    (key,) = inventory(sessions, host, usb())
    attach(sessions, hosts, down_vm, key)
    remove_vm.execute(sessions, hosts, remove_vm.Params(down_vm.id))
    assert (hd(sessions, key).status, hd(sessions, key).vm_id) == ("available", None)


def test_the_second_of_two_attaches_that_both_passed_the_checks_is_a_conflict(sessions, hosts, host, make_vm,
                                                                               monkeypatch):
    """Two requests for one device both found it free (PostgreSQL, concurrently): the unique link lets
    one insert win; the other is refused as busy (409), not with an error about its rolled-back rows."""
    from engine.commands import hostdev_rules
    (key,) = inventory(sessions, host, usb())
    first, second = (make_vm(f"twin{i}", status="down", os_type="rhel_9x64") for i in range(2))
    attach(sessions, hosts, first, key)
    monkeypatch.setattr(hostdev_rules, "check", lambda *a, **kw: [])     # as if it read before the first commit
    with pytest.raises(Conflict) as err:
        attach(sessions, hosts, second, key)
    assert [r.code for r in err.value.reasons] == ["HOST_DEVICE_BUSY"]


def test_many_attaches_of_few_devices_never_give_one_device_twice(sessions, race_sessions, hosts, host, make_vm):
    """100 concurrent attaches of 10 devices, by 10 stopped VMs: each device ends with one VM."""
    keys = inventory(sessions, host, *(usb(f"usb_1_{i}", port=f"1-{i}", serial=f"S{i}") for i in range(10)))
    vms = [make_vm(f"racer{i}", status="down", os_type="rhel_9x64") for i in range(10)]

    def worker(n: int) -> list[tuple[str, int]]:
        won = []
        for vm, key in [(vms[(n + j) % 10], keys[(n * 3 + j) % 10]) for j in range(5)]:
            try:
                attach(race_sessions, hosts, vm, key)
                won.append((vm.id, key))
            except Conflict:
                pass
            except EngineError as err:      # refused: held already (the only refusal expected here)
                if not {r.code for r in err.reasons} <= {"HOST_DEVICE_BUSY"}:
                    raise
        return won

    results = race(20, worker)
    errors = [r for r in results if isinstance(r, BaseException)]
    wins = [w for r in results if not isinstance(r, BaseException) for w in r]
    assert not errors, errors
    assert sorted(k for _, k in wins) == sorted(set(k for _, k in wins))      # no device won twice
    with sessions() as s:
        for key in keys:
            row = host_devices.get(s, key)
            holders = [d for d in devices.list_for_vm(s, row.vm_id or "-") if d.host_device_id == key]
            assert (row.status == "allocated") == (len(holders) == 1)
    assert len(wins) == len({k for _, k in wins}) and len(wins) >= 1
