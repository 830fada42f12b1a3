"""NIC hot-plug on a q35 guest (PCIe root ports): the domain keeps free ports for hot-plug, the guest
sees the NICs, PCIe hot-unplug completes, and a model q35 cannot hot-plug fails with code 49."""
from __future__ import annotations

import uuid

import pytest

from tests.integration.guest import wait_for_serial
from tests.integration.vdsm_plugin.conftest import RpcError, destroy_quietly


def nic(alias, mac, model="pv"):
    return {"type": "interface", "device": "bridge", "network": "pbbr0", "alias": alias, "macAddr": mac,
            "nicModel": model}


@pytest.fixture(scope="module")
def q35(rpc, guest, bridge, tmp_path_factory):
    vm_id = str(uuid.uuid4())
    serial = tmp_path_factory.mktemp("q35") / "console.log"
    rpc("VM.create", vmId=vm_id, params={
        "name": f"pb-q35-{vm_id[:8]}", "memSize": 256, "vcpus": 1, "machine": "q35", "pciePorts": 2,
        "kernel": str(guest.kernel), "initrd": str(guest.initrd), "cmdline": guest.cmdline,
        "serialLog": str(serial), "devices": [nic("ua-q0", "56:6f:1a:50:00:00")]})
    wait_for_serial(serial, "PLUGBOARD-GUEST-READY", timeout=90)
    yield {"id": vm_id, "serial": serial}
    destroy_quietly(rpc, vm_id)


def test_two_free_ports_take_two_nics_that_the_guest_sees(rpc, q35):
    offset = 0
    for i in (1, 2):
        mac = f"56:6f:1a:50:00:0{i}"
        res = rpc("VM.hotplugNic", vmId=q35["id"], nic=nic(f"ua-q{i}", mac, "e1000e" if i == 2 else "pv"))
        assert res["address"]["type"] == "pci"
        _, offset = wait_for_serial(q35["serial"], rf"PB-NETS:.*{mac}", timeout=30, after_offset=offset)
    with pytest.raises(RpcError) as e:       # pciePorts=2: no third free port
        rpc("VM.hotplugNic", vmId=q35["id"], nic=nic("ua-q3", "56:6f:1a:50:00:03"))
    assert e.value.code == 49
    for i in (1, 2):
        assert rpc("VM.hotunplugNic", vmId=q35["id"], nic={"alias": f"ua-q{i}"})["status"] == "removed"
    wait_for_serial(q35["serial"], r"PB-NETS: (?!.*56:6f:1a:50:00:0[12]).*$", timeout=30, after_offset=offset)


def test_e1000_cannot_be_hot_plugged_on_q35(rpc, q35):
    before = rpc("VM.getDevices", vmId=q35["id"])["devices"]
    with pytest.raises(RpcError) as e:
        rpc("VM.hotplugNic", vmId=q35["id"], nic=nic("ua-old", "56:6f:1a:50:00:09", "e1000"))
    assert e.value.code == 49 and e.value.data["libvirtCode"]
    assert rpc("VM.getDevices", vmId=q35["id"])["devices"] == before


def test_no_pcie_ports_means_no_hotplug_port(rpc, bridge):
    """pciePorts=0: the domain's own devices have their ports, and none is left for hot-plug."""
    vm_id = str(uuid.uuid4())
    try:
        rpc("VM.create", vmId=vm_id, params={"name": f"pb-q35-0-{vm_id[:8]}", "memSize": 64, "vcpus": 1,
                                             "machine": "q35", "pciePorts": 0,
                                             "devices": [nic("ua-z0", "56:6f:1a:50:01:00")]})
        with pytest.raises(RpcError) as e:
            rpc("VM.hotplugNic", vmId=vm_id, nic=nic("ua-z1", "56:6f:1a:50:01:01"))
        assert e.value.code == 49 and "No more available PCI slots" in e.value.error["message"]
        assert {d["alias"] for d in rpc("VM.getDevices", vmId=vm_id)["devices"]} >= {"ua-z0"}
        assert "ua-z1" not in {d["alias"] for d in rpc("VM.getDevices", vmId=vm_id)["devices"]}
    finally:
        destroy_quietly(rpc, vm_id)
