"""The gating read (engine.commands.allowed): each verdict is what the action's own execute would
answer now, and reading it changes nothing."""
from __future__ import annotations

import pytest

from engine.auth import LOCAL_ADMIN, MEMBER, Principal
from engine.commands import add_controller, allowed, plug_unplug_nic, remove_vm, stop_vm
from engine.errors import EngineError, NotFound


def codes(verdict):
    return [r["code"] for r in verdict["reasons"]]


def refused_codes(execute, *args, **kw) -> list[str]:
    """The reason codes execute answers (empty when it went through)."""
    try:
        execute(*args, **kw)
    except EngineError as err:
        return [r.code for r in err.reasons]
    return []


def test_a_down_vm(sessions, host, make_vm, make_nic, db):
    vm = make_vm(status="down", os_type="rhel_9x64")
    nic = make_nic(vm, is_plugged=False)
    before = (db.table_counts(), db.codes())
    got = allowed.for_vm(sessions, LOCAL_ADMIN, vm.id)
    assert (db.table_counts(), db.codes()) == before        # a read: nothing written, nothing audited
    assert got["vm"]["start"] == {"allowed": True, "reasons": []}
    assert codes(got["vm"]["stop"]) == ["VM_NOT_RUNNING"]
    for action in ("remove", "add_nic", "add_active_nic", "add_controller", "add_hostdev"):
        assert got["vm"][action]["allowed"], action
    member = Principal("m", roles=frozenset({MEMBER}), projects=frozenset({vm.project_id}))
    assert codes(allowed.for_vm(sessions, member, vm.id)["vm"]["add_hostdev"]) == ["ADMIN_REQUIRED"]
    ok = {"allowed": True, "reasons": []}
    assert got["devices"] == {nic.id: {"kind": "nic", "activate": ok, "update": ok, "remove": ok,
                                       "deactivate": got["devices"][nic.id]["deactivate"]}}
    assert codes(got["devices"][nic.id]["deactivate"]) == ["NIC_ALREADY_UNPLUGGED"]


def test_a_running_windows_xp_vm_refuses_nic_hotplug_with_the_commands_own_reasons(sessions, hosts, host, fake,
                                                                                   make_vm, make_nic):
    vm = make_vm("xp", status="up", host=host, os_type="windows_xp")
    fake.add_domain(vm.id, vm.name)
    nic = make_nic(vm, is_plugged=False)
    got = allowed.for_vm(sessions, LOCAL_ADMIN, vm.id)
    activate = got["devices"][nic.id]["activate"]
    assert not activate["allowed"] and codes(activate) == ["OS_NIC_HOTPLUG_UNSUPPORTED"]
    assert "Windows XP" in activate["reasons"][0]["message"]
    assert codes(got["vm"]["add_active_nic"]) == ["OS_NIC_HOTPLUG_UNSUPPORTED"]
    assert got["vm"]["add_nic"]["allowed"]          # a deactivated NIC can be added to it
    assert codes(got["vm"]["add_controller"]) == ["NOT_HOTPLUGGABLE"]
    assert codes(got["vm"]["remove"]) == ["VM_NOT_DOWN"] and got["vm"]["stop"]["allowed"]
    # Each verdict is what the action answers when tried.
    assert refused_codes(plug_unplug_nic.execute, sessions, hosts,
                         plug_unplug_nic.Params(vm.id, nic.id, True)) == codes(activate)
    assert refused_codes(add_controller.execute, sessions, hosts,
                         add_controller.Params(vm.id, model="qemu-xhci")) == codes(got["vm"]["add_controller"])
    assert refused_codes(remove_vm.execute, sessions, hosts, remove_vm.Params(vm.id)) == codes(got["vm"]["remove"])
    assert refused_codes(stop_vm.execute, sessions, hosts, stop_vm.Params(vm.id)) == []


def test_a_running_vm_can_take_an_active_nic_only_on_a_network_its_host_has(sessions, host, fake, make_vm):
    vm = make_vm(status="up", host=host, os_type="rhel_9x64")
    fake.add_domain(vm.id, vm.name)
    got = allowed.for_vm(sessions, LOCAL_ADMIN, vm.id)
    assert got["vm"]["add_active_nic"]["allowed"]


def test_in_flight_devices_are_refused_everything(sessions, host, make_vm, make_nic):
    vm = make_vm(status="up", host=host, os_type="rhel_9x64")
    nic = make_nic(vm, plug_state="unplugging")
    got = allowed.for_vm(sessions, LOCAL_ADMIN, vm.id)["devices"][nic.id]
    for action in ("activate", "deactivate", "update", "remove"):
        assert "DEVICE_IN_FLIGHT" in codes(got[action]), action


def test_another_projects_vm_is_not_found(sessions, make_vm):
    vm = make_vm(project_id="other")
    member = Principal("m", roles=frozenset({MEMBER}), projects=frozenset({"mine"}))
    with pytest.raises(NotFound):
        allowed.for_vm(sessions, member, vm.id)
