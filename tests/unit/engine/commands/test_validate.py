"""The canDo steps, pure: rows built in memory, no database. One case per reason."""
from __future__ import annotations

from typing import Any

import pytest

from engine.commands import activate_host, add_cluster, add_host, add_nic, add_vm, fence_host, host_maintenance, \
    plug_unplug_nic, remove_host, remove_nic, remove_vm, run_vm, stop_vm, update_nic
from engine.dao.models import Cluster, Host, Vm, VmDevice, VmNic


def a_vm(**kw: Any) -> Vm:
    return Vm(**{"id": "vm-1", "name": "vm1", "status": "up", "os_type": "rhel_9x64", "cluster_id": "c1",
                 "run_on_host": "h1", **kw})


def a_cluster(**kw: Any) -> Cluster:
    return Cluster(**{"id": "c1", "name": "c1", "compat_version": "4.7", **kw})


def a_host(**kw: Any) -> Host:
    return Host(**{"id": "h1", "name": "host1", "cluster_id": "c1", "status": "up",
                   "capabilities": {"bridges": ["br0"], "networks": ["default"]}, **kw})


def a_device(**kw: Any) -> VmDevice:
    return VmDevice(**{"id": "d1", "vm_id": "vm-1", "type": "interface", "device": "bridge", "is_plugged": False,
                       "plug_state": "stable", "alias": "ua-d1", "address": None, **kw})


def a_nic(**kw: Any) -> VmNic:
    return VmNic(**{"id": "d1", "vm_id": "vm-1", "name": "nic1", "mac": "56:6f:1a:00:00:01", "network": "br0",
                    "model": "pv", "linked": True, **kw})


def codes(reasons) -> list[str]:
    return [r.code for r in reasons]


# ---- plug_unplug_nic ------------------------------------------------------------------------------

def plug(plug: bool = True, *, vm=None, nic=None, device=None, cluster=None, host="default", mac_in_use=False):
    return plug_unplug_nic.validate(
        plug_unplug_nic.Params("vm-1", "d1", plug), vm=vm or a_vm(), nic=nic or a_nic(),
        device=device or a_device(is_plugged=not plug), cluster=cluster or a_cluster(),
        host=a_host() if host == "default" else host, mac_in_use=mac_in_use)


def test_plug_on_up_vm_passes():
    assert plug() == []


def test_unplug_on_up_vm_passes():
    assert plug(False) == []


def test_plug_vm_status_illegal():
    assert codes(plug(vm=a_vm(status="paused"))) == ["VM_STATUS_ILLEGAL"]


def test_plug_device_in_flight():
    reasons = plug(device=a_device(plug_state="unplugging", is_plugged=True))
    assert codes(reasons) == ["DEVICE_IN_FLIGHT"]
    assert reasons[0].vars["plug_state"] == "unplugging"


def test_plug_nic_already_plugged():
    assert codes(plug(device=a_device(is_plugged=True))) == ["NIC_ALREADY_PLUGGED"]


def test_unplug_nic_already_unplugged():
    assert codes(plug(False, device=a_device(is_plugged=False))) == ["NIC_ALREADY_UNPLUGGED"]


def test_plug_mac_in_use():
    reasons = plug(mac_in_use=True)
    assert codes(reasons) == ["MAC_IN_USE"]
    assert reasons[0].vars == {"mac": "56:6f:1a:00:00:01"}


def test_plug_os_unsupported_on_running_vm():
    assert codes(plug(vm=a_vm(os_type="windows_xp"))) == ["OS_NIC_HOTPLUG_UNSUPPORTED"]


def test_unplug_os_unsupported_on_running_vm():
    assert codes(plug(False, vm=a_vm(os_type="windows_xp"))) == ["OS_NIC_HOTPLUG_UNSUPPORTED"]


def test_cold_plug_allowed_for_every_os():
    assert plug(vm=a_vm(status="down", os_type="windows_xp", run_on_host=None), host=None,
                cluster=a_cluster(compat_version="3.0")) == []


def test_plug_cluster_version_unsupported():
    reasons = plug(cluster=a_cluster(compat_version="3.0"))
    assert codes(reasons) == ["CLUSTER_VERSION_HOTPLUG_UNSUPPORTED"]
    assert reasons[0].vars["minimum"] == "3.1"


def test_plug_network_not_on_host():
    reasons = plug(nic=a_nic(network="storage"))
    assert codes(reasons) == ["NETWORK_NOT_ON_HOST"]
    assert reasons[0].vars == {"network": "storage", "host": "host1"}


def test_plug_network_may_be_a_libvirt_network():
    assert plug(nic=a_nic(network="default")) == []


def test_unplug_does_not_check_the_network():
    assert plug(False, nic=a_nic(network="storage")) == []


def test_plug_running_vm_without_host():
    assert codes(plug(host=None)) == ["HOST_NOT_FOUND"]


def test_plug_returns_every_reason():
    reasons = plug(vm=a_vm(os_type="windows_xp"), cluster=a_cluster(compat_version="3.0"),
                   nic=a_nic(network="storage"), mac_in_use=True)
    assert codes(reasons) == ["MAC_IN_USE", "OS_NIC_HOTPLUG_UNSUPPORTED", "CLUSTER_VERSION_HOTPLUG_UNSUPPORTED",
                              "NETWORK_NOT_ON_HOST"]


# ---- add_nic --------------------------------------------------------------------------------------

def add(vm=None, host="default", name_in_use=False, mac_in_use=False, **kw):
    params = add_nic.Params(**{"vm_id": "vm-1", "name": "nic9", "network": "br0", **kw})
    return add_nic.validate(params, vm=vm or a_vm(), cluster=a_cluster(),
                            host=a_host() if host == "default" else host, name_in_use=name_in_use,
                            mac_in_use=mac_in_use)


def test_add_nic_passes():
    assert add() == []


@pytest.mark.parametrize("name", ["", "n" * 65, "nic\n", "n\x00c", " nic", "nic "])
def test_add_nic_name_invalid(name):
    assert codes(add(name=name)) == ["NAME_INVALID"]
    assert codes(add(name=name, name_in_use=True)) == ["NAME_INVALID"]     # not looked up: not a name


def test_add_nic_name_in_use():
    assert codes(add(name_in_use=True)) == ["NAME_IN_USE"]


@pytest.mark.parametrize("network", ["br 0", "br0\n", "br0'/><evil/>", "br\u00070"])
def test_add_nic_network_name_invalid(network):
    assert codes(add(network=network, vm=a_vm(status="down"))) == ["NETWORK_NAME_INVALID"]


def test_add_nic_model_unsupported():
    assert codes(add(model="ne2k_pci")) == ["NIC_MODEL_UNSUPPORTED"]


@pytest.mark.parametrize("mac", ["56:6f:1a:00:00", "zz:6f:1a:00:00:01", "01:00:5e:00:00:01"])
def test_add_nic_mac_invalid(mac):
    assert codes(add(mac=mac)) == ["MAC_INVALID"]


def test_add_nic_mac_in_use_when_active():
    assert codes(add(mac="56:6f:1a:00:00:07", mac_in_use=True)) == ["MAC_IN_USE"]


def test_add_nic_inactive_may_share_a_mac():
    assert add(mac="56:6f:1a:00:00:07", mac_in_use=True, active=False) == []


def test_add_nic_active_vm_status_illegal():
    assert codes(add(vm=a_vm(status="powering_up"))) == ["VM_STATUS_ILLEGAL"]


def test_add_nic_inactive_in_any_status():
    assert add(vm=a_vm(status="powering_up"), active=False) == []


def test_add_nic_active_running_os_unsupported():
    assert codes(add(vm=a_vm(os_type="windows_xp"))) == ["OS_NIC_HOTPLUG_UNSUPPORTED"]


def test_add_nic_active_running_network_not_on_host():
    assert codes(add(network="storage")) == ["NETWORK_NOT_ON_HOST"]


def test_add_nic_active_down_vm_checks_no_host():
    assert add(vm=a_vm(status="down", os_type="windows_xp"), host=None, network="storage") == []


# ---- update_nic -----------------------------------------------------------------------------------

def upd(vm=None, device=None, nic=None, name_in_use=False, mac_in_use=False, **kw):
    params = update_nic.Params(**{"vm_id": "vm-1", "nic_id": "d1", **kw})
    return update_nic.validate(params, vm=vm or a_vm(), nic=nic or a_nic(), device=device or a_device(is_plugged=True),
                               name_in_use=name_in_use, mac_in_use=mac_in_use)


def test_update_nic_plugged_on_running_vm():
    assert codes(upd(network="default")) == ["NIC_PLUGGED_ON_RUNNING_VM"]


def test_update_nic_link_state_of_plugged_nic_on_running_vm_passes():
    assert upd(linked=False) == []


def test_update_nic_same_values_change_nothing():
    assert upd(name="nic1", network="br0", linked=True, mac="56:6F:1A:00:00:01") == []


def test_update_nic_link_state_needs_an_up_vm():
    assert codes(upd(vm=a_vm(status="paused"), linked=False)) == ["VM_STATUS_ILLEGAL"]


def test_update_unplugged_nic_on_running_vm_passes():
    assert upd(device=a_device(is_plugged=False), network="default", model="e1000") == []


def test_update_nic_device_in_flight():
    assert codes(upd(device=a_device(is_plugged=True, plug_state="plugging"), vm=a_vm(status="down"),
                     name="x")) == ["DEVICE_IN_FLIGHT"]


def test_update_nic_name_invalid():
    assert codes(upd(vm=a_vm(status="down"), name="n" * 65)) == ["NAME_INVALID"]


def test_update_nic_name_in_use():
    assert codes(upd(vm=a_vm(status="down"), name="nic2", name_in_use=True)) == ["NAME_IN_USE"]


def test_update_nic_network_name_invalid():
    assert codes(upd(vm=a_vm(status="down"), network="a/b")) == ["NETWORK_NAME_INVALID"]


def test_update_nic_model_unsupported():
    assert codes(upd(vm=a_vm(status="down"), model="ne2k")) == ["NIC_MODEL_UNSUPPORTED"]


def test_update_nic_mac_invalid():
    assert codes(upd(vm=a_vm(status="down"), mac="56:6f")) == ["MAC_INVALID"]


def test_update_plugged_nic_mac_in_use():
    assert codes(upd(vm=a_vm(status="down"), mac="56:6f:1a:00:00:09", mac_in_use=True)) == ["MAC_IN_USE"]


def test_update_unplugged_nic_may_share_a_mac():
    assert upd(vm=a_vm(status="down"), device=a_device(is_plugged=False), mac="56:6f:1a:00:00:09",
               mac_in_use=True) == []


# ---- remove_nic -----------------------------------------------------------------------------------

def rm(vm=None, device=None):
    return remove_nic.validate(remove_nic.Params("vm-1", "d1"), vm=vm or a_vm(), nic=a_nic(),
                               device=device or a_device())


def test_remove_nic_of_down_vm_passes():
    assert rm(vm=a_vm(status="down"), device=a_device(is_plugged=True)) == []


def test_remove_deactivated_nic_of_running_vm_passes():
    assert rm(device=a_device(is_plugged=False)) == []


def test_remove_nic_plugged_on_running_vm():
    assert codes(rm(device=a_device(is_plugged=True))) == ["NIC_PLUGGED_ON_RUNNING_VM"]


def test_remove_nic_in_flight():
    assert codes(rm(device=a_device(is_plugged=True, plug_state="unplugging"))) == ["DEVICE_IN_FLIGHT"]


# ---- run_vm / stop_vm / remove_vm ---------------------------------------------------------------------

def run(vm=None, host="default", host_id=None, networks=("br0",), in_flight=()):
    return run_vm.validate(run_vm.Params("vm-1", host_id), vm=vm or a_vm(status="down", run_on_host=None),
                           cluster=a_cluster(), host=a_host() if host == "default" else host,
                           networks=list(networks), in_flight=list(in_flight))


def test_run_vm_passes():
    assert run() == []


def test_run_vm_not_down():
    assert codes(run(vm=a_vm(status="up"))) == ["VM_NOT_DOWN"]


def test_run_vm_device_in_flight():
    assert codes(run(in_flight=[a_device(plug_state="plugging")])) == ["DEVICE_IN_FLIGHT"]


def test_run_vm_requested_host_not_found():
    assert codes(run(host=None, host_id="nope")) == ["HOST_NOT_FOUND"]


def test_run_vm_no_host_available():
    reasons = run(host=None)
    assert codes(reasons) == ["NO_HOST_AVAILABLE"]
    assert reasons[0].vars["networks"] == ["br0"]


def test_run_vm_host_not_up():
    assert codes(run(host=a_host(status="maintenance"))) == ["HOST_NOT_UP"]


def test_run_vm_host_not_in_cluster():
    assert codes(run(host=a_host(cluster_id="c2"))) == ["HOST_NOT_IN_CLUSTER"]


def test_run_vm_network_not_on_host():
    assert codes(run(networks=("br0", "storage"))) == ["NETWORK_NOT_ON_HOST"]


def test_stop_vm_not_running():
    assert codes(stop_vm.validate(stop_vm.Params("vm-1"), vm=a_vm(status="down"))) == ["VM_NOT_RUNNING"]


def test_stop_vm_status_illegal():
    assert codes(stop_vm.validate(stop_vm.Params("vm-1"), vm=a_vm(status="powering_down"))) == ["VM_STATUS_ILLEGAL"]


def test_stop_vm_passes():
    assert stop_vm.validate(stop_vm.Params("vm-1"), vm=a_vm(status="paused")) == []


def test_remove_vm_not_down():
    assert codes(remove_vm.validate(remove_vm.Params("vm-1"), vm=a_vm(status="up"))) == ["VM_NOT_DOWN"]


def test_remove_vm_passes():
    assert remove_vm.validate(remove_vm.Params("vm-1"), vm=a_vm(status="down")) == []


# ---- add_vm / add_cluster / add_host --------------------------------------------------------------

def addvm(cluster="default", name_in_use=False, **kw):
    return add_vm.validate(add_vm.Params(**{"name": "vm9", **kw}),
                           cluster=a_cluster() if cluster == "default" else cluster, name_in_use=name_in_use)


def test_add_vm_passes():
    assert addvm(boot={"kernel": "/boot/vmlinuz", "cmdline": "console=ttyS0"}, custom_properties={"mode": "x"}) == []


def test_add_vm_name_invalid():
    assert codes(addvm(name="my vm")) == ["NAME_INVALID"]


@pytest.mark.parametrize("name", ["vm9\n", "vm<9>", "vm 9", "", "v" * 65])
def test_add_vm_name_outside_the_agents_pattern(name):
    assert codes(addvm(name=name)) == ["NAME_INVALID"]


@pytest.mark.parametrize("boot, field", [
    ({"cmdline": "console=ttyS0\u0007"}, "boot.cmdline"),          # a VM that could never start
    ({"cmdline": "a\nb"}, "boot.cmdline"),
    ({"kernel": "/boot/vmlinuz\n"}, "boot.kernel"),
    ({"initrd": "/boot/<evil/>"}, "boot.initrd"),
    ({"serialLog": "relative.log"}, "boot.serialLog"),
])
def test_add_vm_boot_strings_outside_the_agents_patterns(boot, field):
    found = addvm(boot=boot)
    assert codes(found) == ["FIELD_INVALID"] and found[0].vars["field"] == field


def test_add_vm_custom_property_with_a_control_character():
    found = addvm(custom_properties={"mode": "x\u001b[2J"})
    assert codes(found) == ["FIELD_INVALID"] and found[0].vars["field"] == "custom_properties.mode"


def test_add_vm_name_in_use():
    assert codes(addvm(name_in_use=True)) == ["NAME_IN_USE"]


def test_add_vm_cluster_not_found():
    assert codes(addvm(cluster=None, cluster_id="nope")) == ["CLUSTER_NOT_FOUND"]


def test_add_vm_os_type_unknown():
    assert codes(addvm(os_type="beos")) == ["OS_TYPE_UNKNOWN"]


@pytest.mark.parametrize("kw,field", [({"memory_mb": 8}, "memory_mb"), ({"vcpus": 0}, "vcpus"),
                                      ({"machine": "virt"}, "machine"), ({"graphics": "sdl"}, "graphics"),
                                      ({"boot": {"kernel": "vmlinuz"}}, "boot.kernel"),
                                      ({"boot": {"bios": "x"}}, "boot.bios"),
                                      ({"custom_properties": {"bad-name": "x"}}, "custom_properties")])
def test_add_vm_field_invalid(kw, field):
    reasons = addvm(**kw)
    assert codes(reasons) == ["FIELD_INVALID"]
    assert reasons[0].vars["field"] == field


def test_add_cluster_name_invalid():
    assert codes(add_cluster.validate(add_cluster.Params(""), name_in_use=False)) == ["NAME_INVALID"]


def test_add_cluster_name_in_use():
    assert codes(add_cluster.validate(add_cluster.Params("c"), name_in_use=True)) == ["NAME_IN_USE"]


def test_add_cluster_compat_version_invalid():
    assert codes(add_cluster.validate(add_cluster.Params("c", "4"), name_in_use=False)) == ["COMPAT_VERSION_INVALID"]


def test_add_cluster_description_too_long():
    assert codes(add_cluster.validate(add_cluster.Params("c", description="d" * 300),
                                      name_in_use=False)) == ["FIELD_INVALID"]


def addhost(cluster="default", name_in_use=False, **kw):
    params = add_host.Params(**{"name": "host9", "url": "https://host9:54321/jsonrpc", **kw})
    return add_host.validate(params, cluster=a_cluster() if cluster == "default" else cluster, name_in_use=name_in_use)


def test_add_host_passes():
    assert addhost() == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:54321/jsonrpc", "https://[::1]:54321/jsonrpc",
                                 "https://host9.example:443"])
def test_add_host_url_passes(url):
    assert addhost(url=url) == []


def test_add_host_name_invalid():
    assert codes(addhost(name="a b")) == ["NAME_INVALID"]


def test_add_host_name_in_use():
    assert codes(addhost(name_in_use=True)) == ["NAME_IN_USE"]


@pytest.mark.parametrize("url", [
    "ftp://host9:54321/", "host9:54321", "http://", "http://host9/jsonrpc", "http://host9:0/",
    "http://host9:99999/", "http://user:pw@host9:54321/", "http://host9:54321/jsonrpc?x=1",
    "http://host9:54321/#frag", "http://host9:54321/a b", "http://host9:54321/\u0007",
    "file:///etc/passwd", "gopher://host9:70/", "http://:54321/",
])
def test_add_host_url_invalid(url):
    assert codes(addhost(url=url)) == ["URL_INVALID"]


def test_add_host_cluster_not_found():
    assert codes(addhost(cluster=None, cluster_id="nope")) == ["CLUSTER_NOT_FOUND"]


# ---- host_maintenance, activate_host, remove_host -----------------------------------------------------

def test_maintenance_of_an_up_or_unreachable_host_without_vms_passes():
    for status in ("up", "unreachable"):
        assert host_maintenance.validate(host_maintenance.Params("h1"), host=a_host(status=status), running=[]) == []


def test_maintenance_host_in_maintenance():
    reasons = host_maintenance.validate(host_maintenance.Params("h1"), host=a_host(status="maintenance"), running=[])
    assert codes(reasons) == ["HOST_IN_MAINTENANCE"]


def test_maintenance_host_runs_vms():
    [reason] = host_maintenance.validate(host_maintenance.Params("h1"), host=a_host(),
                                         running=[a_vm(name="web"), a_vm(id="vm-2", name="db", status="paused")])
    assert reason.code == "HOST_RUNS_VMS" and reason.vars["vms"] == ["web", "db"]
    assert "web, db" in reason.message and "stop them first" in reason.message


def test_maintenance_of_an_unreachable_host_with_vms_says_it_may_be_confirmed_rebooted():
    [reason] = host_maintenance.validate(host_maintenance.Params("h1"), host=a_host(status="unreachable"),
                                         running=[a_vm(status="unknown")])
    assert reason.code == "HOST_RUNS_VMS" and "confirm that it was" in reason.message


def test_fence_an_unreachable_host_passes():
    assert fence_host.validate(fence_host.Params("h1"), host=a_host(status="unreachable")) == []


def test_fence_host_vms_changing():
    [reason] = fence_host.validate(fence_host.Params("h1"), host=a_host(status="unreachable"),
                                   running=[a_vm(status="powering_up"), a_vm(id="vm-2", name="vm2")])
    assert reason.code == "HOST_VMS_CHANGING" and reason.vars["vms"] == ["vm1"]


@pytest.mark.parametrize("status", ["up", "maintenance"])
def test_fence_host_not_unreachable(status):
    [reason] = fence_host.validate(fence_host.Params("h1"), host=a_host(status=status))
    assert reason.code == "HOST_NOT_UNREACHABLE" and reason.vars["status"] == status


def test_activate_a_host_in_maintenance_passes():
    assert activate_host.validate(activate_host.Params("h1"), host=a_host(status="maintenance")) == []


@pytest.mark.parametrize("status", ["up", "unreachable"])
def test_activate_host_not_in_maintenance(status):
    [reason] = activate_host.validate(activate_host.Params("h1"), host=a_host(status=status))
    assert reason.code == "HOST_NOT_IN_MAINTENANCE" and reason.vars["status"] == status


def test_remove_a_host_in_maintenance_passes():
    assert remove_host.validate(remove_host.Params("h1"), host=a_host(status="maintenance"), held=[]) == []


def test_remove_host_not_in_maintenance():
    [reason] = remove_host.validate(remove_host.Params("h1"), host=a_host(), held=[])
    assert reason.code == "HOST_NOT_IN_MAINTENANCE" and "put it in maintenance first" in reason.message


def test_remove_host_devices_held():
    [reason] = remove_host.validate(remove_host.Params("h1"), host=a_host(status="maintenance"),
                                    held=[("usb_1_5", "vm1")])
    assert reason.code == "HOST_DEVICES_HELD" and reason.vars["devices"] == [{"device": "usb_1_5", "vm": "vm1"}]


def test_remove_host_every_reason():
    assert codes(remove_host.validate(remove_host.Params("h1"), host=a_host(), held=[("usb_1_5", "vm1")])) == \
        ["HOST_NOT_IN_MAINTENANCE", "HOST_DEVICES_HELD"]
