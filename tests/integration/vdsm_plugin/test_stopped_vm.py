"""Cold plug on a defined, stopped VM: only the persistent definition changes. USB controllers with
unique indexes, config-only USB and PCI host devices, and the USB startup policy at VM start."""
from __future__ import annotations

import uuid

import pytest

from tests.integration.vdsm_plugin.conftest import RpcError, destroy_quietly


def controller(alias, index, model="ich9-ehci1"):
    return {"type": "controller", "device": "usb", "model": model, "index": index, "alias": alias}


@pytest.fixture(scope="module")
def stopped_vm(rpc):
    vm_id = str(uuid.uuid4())
    info = rpc("VM.define", vmId=vm_id, params={"name": f"pb-cold-{vm_id[:8]}", "memSize": 128, "vcpus": 1,
                                                "machine": "q35"})
    assert info["status"] == "down" and info["persistent"]
    yield vm_id
    destroy_quietly(rpc, vm_id)


def by_alias(rpc, vm_id):
    return {d["alias"]: d for d in rpc("VM.getDevices", vmId=vm_id)["devices"]}


def test_two_usb_controllers_with_unique_indexes(rpc, stopped_vm):
    a = rpc("VM.addController", vmId=stopped_vm, controller=controller("ua-ehci", 1))
    b = rpc("VM.addController", vmId=stopped_vm, controller=controller("ua-xhci", 2, "nec-xhci"))
    assert (a["index"], b["index"]) == (1, 2)
    devs = by_alias(rpc, stopped_vm)
    assert devs["ua-ehci"]["model"] == "ich9-ehci1" and devs["ua-xhci"]["model"] == "nec-xhci"


def test_duplicate_controller_index_is_refused(rpc, stopped_vm):
    before = by_alias(rpc, stopped_vm)
    with pytest.raises(RpcError) as e:
        rpc("VM.addController", vmId=stopped_vm, controller=controller("ua-dup", 1))
    assert e.value.code == 312
    assert by_alias(rpc, stopped_vm) == before


def test_controller_removed_on_stopped_vm(rpc, stopped_vm):
    rpc("VM.addController", vmId=stopped_vm, controller=controller("ua-tmp", 5, "piix3-uhci"))
    assert rpc("VM.removeController", vmId=stopped_vm, controller={"alias": "ua-tmp"}) == \
        {"status": "removed", "alias": "ua-tmp"}
    assert "ua-tmp" not in by_alias(rpc, stopped_vm)


def test_config_only_usb_hostdev_by_port_path(rpc, stopped_vm):
    res = rpc("VM.hotplugHostdev", vmId=stopped_vm,
              hostdev={"type": "hostdev", "device": "usb", "alias": "ua-key", "source": {"portPath": "2-1.4"}})
    assert res["nodeDev"] == "usb_2_3"
    src = by_alias(rpc, stopped_vm)["ua-key"]["source"]
    assert int(str(src["bus"]), 0) == 2 and int(str(src["device"]), 0) == 3
    # The device is now held: a second VM cannot have it, and the inventory says who holds it.
    inv = {d["name"]: d for d in rpc("Host.hostdevListByCaps", caps=["usb_device"])["devices"]}
    assert inv["usb_2_3"]["attachedTo"] == stopped_vm
    with pytest.raises(RpcError) as e:
        rpc("VM.hotplugHostdev", vmId=stopped_vm,
            hostdev={"type": "hostdev", "device": "usb", "alias": "ua-key2", "source": {"bus": 2, "device": 3}})
    assert e.value.code == 315
    assert rpc("VM.hotunplugHostdev", vmId=stopped_vm, hostdev={"alias": "ua-key"})["status"] == "removed"


def test_config_only_pci_hostdev(rpc, stopped_vm):
    res = rpc("VM.hotplugHostdev", vmId=stopped_vm,
              hostdev={"type": "hostdev", "device": "pci", "alias": "ua-vf0",
                       "source": {"nodeDev": "pci_0000_02_00_0"}})
    assert res["device"] == "pci" and res["nodeDev"] == "pci_0000_02_00_0"
    assert "ua-vf0" in by_alias(rpc, stopped_vm)
    assert rpc("VM.hotunplugHostdev", vmId=stopped_vm, hostdev={"alias": "ua-vf0"})["status"] == "removed"


def test_ambiguous_vendor_product_is_refused(rpc, stopped_vm):
    with pytest.raises(RpcError) as e:
        rpc("VM.hotplugHostdev", vmId=stopped_vm,
            hostdev={"type": "hostdev", "device": "usb", "alias": "ua-stick",
                     "source": {"vendor": "0x0781", "product": "0x5567"}})
    assert e.value.code == 311


def test_missing_host_device_is_refused(rpc, stopped_vm):
    with pytest.raises(RpcError) as e:
        rpc("VM.hotplugHostdev", vmId=stopped_vm,
            hostdev={"type": "hostdev", "device": "pci", "alias": "ua-none",
                     "source": {"domain": "0x0000", "bus": "0x09", "slot": "0x00", "function": "0x0"}})
    assert e.value.code == 308


def test_hostdev_list(rpc):
    devs = {d["name"]: d for d in rpc("Host.hostdevListByCaps", caps=["usb_device", "pci"])["devices"]}
    key = devs["usb_2_3"]
    assert (key["vendorId"], key["productId"], key["bus"], key["device"], key["portPath"]) == \
        ("136b", "0003", 2, 3, "2-1.4")
    assert key["allowed"] is True
    assert devs["pci_0000_02_00_0"]["allowed"] is True and devs["pci_0000_02_00_0"]["pciAddress"] == "0000:02:00.0"
    logitech = next(d for d in devs.values() if d["vendorId"] == "046d")
    assert logitech["allowed"] is False


GONE_USB = {"type": "hostdev", "device": "usb", "alias": "ua-gone", "source": {"vendor": "0x1234", "product": "0x5678"}}


def test_optional_usb_device_gone_is_dropped_at_start(rpc, guest, tmp_path):
    vm_id = str(uuid.uuid4())
    last = rpc("Host.getEvents")["last"]
    try:
        info = rpc("VM.create", vmId=vm_id, params={
            "name": f"pb-opt-{vm_id[:8]}", "memSize": 128, "vcpus": 1, "machine": "pc",
            "kernel": str(guest.kernel), "initrd": str(guest.initrd), "cmdline": "console=ttyS0 rdinit=/init",
            "devices": [{**GONE_USB, "startupPolicy": "optional"}]})
        assert info["status"] == "up"
        assert "ua-gone" not in {d["alias"] for d in info["devices"]}
        events = rpc("Host.getEvents", after=last)["events"]
        assert any(e["kind"] == "hostdev_dropped" and e["alias"] == "ua-gone" for e in events)
    finally:
        destroy_quietly(rpc, vm_id)


def test_required_usb_device_gone_refuses_start(rpc, guest):
    vm_id = str(uuid.uuid4())
    with pytest.raises(RpcError) as e:
        rpc("VM.create", vmId=vm_id, params={
            "name": f"pb-req-{vm_id[:8]}", "memSize": 128, "vcpus": 1, "machine": "pc",
            "kernel": str(guest.kernel), "initrd": str(guest.initrd),
            "devices": [{**GONE_USB, "startupPolicy": "mandatory"}]})
    assert e.value.code == 317 and "ua-gone" in e.value.error["message"]   # hostdevRequiredMissing
    assert vm_id not in {v["vmId"] for v in rpc("VM.list")["vms"]}


def test_an_optional_usb_device_by_port_path_gone_is_dropped_at_start(rpc, guest):
    """The engine names USB devices by port path: the agent applies their policy itself."""
    vm_id = str(uuid.uuid4())
    last = rpc("Host.getEvents")["last"]
    try:
        info = rpc("VM.create", vmId=vm_id, params={
            "name": f"pb-port-{vm_id[:8]}", "memSize": 128, "vcpus": 1, "machine": "pc",
            "kernel": str(guest.kernel), "initrd": str(guest.initrd), "cmdline": "console=ttyS0 rdinit=/init",
            "devices": [{"type": "hostdev", "device": "usb", "alias": "ua-port", "startupPolicy": "optional",
                         "source": {"portPath": "9-9.9"}}]})
        assert info["status"] == "up" and "ua-port" not in {d["alias"] for d in info["devices"]}
        events = rpc("Host.getEvents", after=last)["events"]
        assert [e["alias"] for e in events if e["kind"] == "hostdev_dropped"] == ["ua-port"]
    finally:
        destroy_quietly(rpc, vm_id)


def test_one_host_device_twice_in_one_vm_is_refused(rpc):
    vm_id = str(uuid.uuid4())
    key = {"type": "hostdev", "device": "usb", "source": {"portPath": "2-1.4"}}
    with pytest.raises(RpcError) as e:
        rpc("VM.define", vmId=vm_id, params={"name": f"pb-twice-{vm_id[:8]}", "memSize": 128, "vcpus": 1,
                                             "machine": "pc", "devices": [{**key, "alias": "ua-k1"},
                                                                          {**key, "alias": "ua-k2"}]})
    assert e.value.code == 315
    assert vm_id not in {v["vmId"] for v in rpc("VM.list")["vms"]}


def test_a_plug_of_an_alias_the_definition_has_is_refused_and_changes_nothing(rpc, stopped_vm):
    nic = {"type": "interface", "device": "bridge", "network": "pbbr0", "alias": "ua-twice",
           "macAddr": "56:6f:1a:10:00:0a", "nicModel": "pv"}
    rpc("VM.hotplugNic", vmId=stopped_vm, nic=nic)
    before = by_alias(rpc, stopped_vm)
    with pytest.raises(RpcError) as e:
        rpc("VM.hotplugNic", vmId=stopped_vm, nic={**nic, "macAddr": "56:6f:1a:10:00:0b"})
    assert e.value.code == 49 and "ua-twice" in str(e.value)
    assert by_alias(rpc, stopped_vm) == before
    assert rpc("VM.hotunplugNic", vmId=stopped_vm, nic={"alias": "ua-twice"})["status"] == "removed"


def test_remove_verbs_refuse_another_kinds_alias(rpc, stopped_vm):
    """hotunplugRedirdev once removed a USB controller from a stopped VM's definition."""
    rpc("VM.addController", vmId=stopped_vm, controller=controller("ua-keep", 7, "piix3-uhci"))
    with pytest.raises(RpcError) as e:
        rpc("VM.hotunplugRedirdev", vmId=stopped_vm, redirdev={"alias": "ua-keep"})
    assert e.value.code == 304 and e.value.data["kind"] == "controller"
    assert "ua-keep" in by_alias(rpc, stopped_vm)
    assert rpc("VM.removeController", vmId=stopped_vm, controller={"alias": "ua-keep"})["status"] == "removed"
