"""The agent on a running guest: NICs appear and disappear in the guest, USB redirection comes and
goes, controllers are refused live, bad calls change nothing, concurrent plugs get distinct aliases.
One guest is booted for the whole module."""
from __future__ import annotations

import socket
import threading
import uuid

import pytest

from tests.integration.guest import guest_nets, wait_for_serial
from tests.integration.vdsm_plugin.conftest import RpcError, destroy_quietly

MAC0, MAC1 = "56:6f:1a:10:00:00", "56:6f:1a:10:00:01"


def nic(alias: str, mac: str, **extra):
    return {"type": "interface", "device": "bridge", "network": "pbbr0", "alias": alias,
            "macAddr": mac, "nicModel": "pv", **extra}


@pytest.fixture(scope="module")
def vm(rpc, guest, bridge, tmp_path_factory):
    vm_id = str(uuid.uuid4())
    serial = tmp_path_factory.mktemp("serial") / "console.log"
    params = {"name": f"pb-it-{vm_id[:8]}", "memSize": 256, "vcpus": 1, "machine": "pc", "graphics": "spice",
              "kernel": str(guest.kernel), "initrd": str(guest.initrd),
              "cmdline": "console=ttyS0 quiet panic=-1 rdinit=/init", "serialLog": str(serial),
              "devices": [nic("ua-nic0", MAC0)]}
    info = rpc("VM.create", vmId=vm_id, params=params)
    wait_for_serial(serial, r"PLUGBOARD-GUEST-READY", timeout=90)
    yield {"id": vm_id, "serial": serial, "created": info}
    destroy_quietly(rpc, vm_id)


def devices_by_alias(rpc, vm_id):
    return {d["alias"]: d for d in rpc("VM.getDevices", vmId=vm_id)["devices"]}


def test_create_reports_alias_and_address(vm):
    info = vm["created"]
    assert info["status"] == "up"
    nic0 = next(d for d in info["devices"] if d["alias"] == "ua-nic0")
    assert nic0["macAddr"] == MAC0 and nic0["address"]["type"] == "pci"


def test_hotplug_nic_is_seen_by_the_guest_and_unplug_removes_it(rpc, vm):
    res = rpc("VM.hotplugNic", vmId=vm["id"], nic=nic("ua-nic1", MAC1))
    assert res["alias"] == "ua-nic1" and res["macAddr"] == MAC1
    assert res["address"]["type"] == "pci" and res["address"]["slot"]
    _, seen = wait_for_serial(vm["serial"], rf"PB-NETS:.*{MAC1}", timeout=30)

    res = rpc("VM.hotunplugNic", vmId=vm["id"], nic={"alias": "ua-nic1"})
    assert res["status"] == "removed" and res["elapsed"] > 0
    assert "ua-nic1" not in devices_by_alias(rpc, vm["id"])
    match, _ = wait_for_serial(vm["serial"], rf"PB-NETS: (?!.*{MAC1}).*{MAC0}.*$", timeout=30,
                               after_offset=seen)
    assert MAC1 not in match.group(0)


def test_unplug_event_is_in_the_journal(rpc, vm):
    last = rpc("Host.getEvents", after=0)["last"]
    rpc("VM.hotplugNic", vmId=vm["id"], nic=nic("ua-nic2", "56:6f:1a:10:00:02"))
    rpc("VM.hotunplugNic", vmId=vm["id"], nic={"macAddr": "56:6f:1a:10:00:02"})
    events = rpc("Host.getEvents", after=last, timeout=5)["events"]
    removed = [e for e in events if e["kind"] == "device_removed"]
    assert removed and removed[0]["alias"] == "ua-nic2" and removed[0]["vmId"] == vm["id"]


def test_bad_params_are_coded_and_change_nothing(rpc, vm):
    before = devices_by_alias(rpc, vm["id"])
    with pytest.raises(RpcError) as e:
        rpc("VM.hotplugNic", vmId=vm["id"], nic=nic("ua-bad", "not-a-mac"))
    assert e.value.code == -32602 and e.value.data["field"] == "nic/macAddr"
    with pytest.raises(RpcError) as e:
        rpc("VM.hotplugNic", vmId=vm["id"], nic={**nic("ua-bad", MAC1), "nicModel": "ne2k_pci"})
    assert e.value.data["field"] == "nic/nicModel"
    assert devices_by_alias(rpc, vm["id"]) == before


def test_a_plug_of_an_alias_the_vm_has_is_refused_by_libvirt_and_changes_nothing(rpc, vm):
    """A second device with an alias the domain has: the plug's code, and the domain as it was."""
    before = devices_by_alias(rpc, vm["id"])
    with pytest.raises(RpcError) as e:
        rpc("VM.hotplugNic", vmId=vm["id"], nic=nic("ua-nic0", "56:6f:1a:10:00:09"))
    assert e.value.code == 49 and "ua-nic0" in str(e.value)
    assert devices_by_alias(rpc, vm["id"]) == before


def test_unknown_vm_is_code_1(rpc):
    with pytest.raises(RpcError) as e:
        rpc("VM.hotplugNic", vmId=str(uuid.uuid4()), nic=nic("ua-x", MAC1))
    assert e.value.code == 1


def test_concurrent_plugs_both_succeed_with_distinct_aliases(rpc, vm):
    results, errors = {}, []

    def plug(i):
        try:
            results[i] = rpc("VM.hotplugNic", vmId=vm["id"], nic=nic(f"ua-par{i}", f"56:6f:1a:10:01:0{i}"))
        except RpcError as e:
            errors.append(e)

    threads = [threading.Thread(target=plug, args=(i,)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert {r["alias"] for r in results.values()} == {"ua-par1", "ua-par2"}
    slots = {r["address"]["slot"] for r in results.values()}
    assert len(slots) == 2
    for i in (1, 2):
        assert rpc("VM.hotunplugNic", vmId=vm["id"], nic={"alias": f"ua-par{i}"})["status"] == "removed"


def test_link_state_changes_live(rpc, vm):
    res = rpc("VM.updateNic", vmId=vm["id"], nic={"alias": "ua-nic0", "linkActive": False})
    assert res["linkActive"] is False
    res = rpc("VM.updateNic", vmId=vm["id"], nic={"alias": "ua-nic0", "linkActive": True})
    assert res["linkActive"] is True


def test_spice_usb_redirection_plug_and_unplug(rpc, vm):
    res = rpc("VM.hotplugRedirdev", vmId=vm["id"],
              redirdev={"type": "redirdev", "device": "spicevmc", "alias": "ua-redir0"})
    assert res["alias"] == "ua-redir0" and res["address"]["type"] == "usb"
    res = rpc("VM.hotunplugRedirdev", vmId=vm["id"], redirdev={"alias": "ua-redir0"})
    assert res["status"] == "removed"
    assert "ua-redir0" not in devices_by_alias(rpc, vm["id"])


def test_tcp_usb_redirection_plug_and_unplug(rpc, vm):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        res = rpc("VM.hotplugRedirdev", vmId=vm["id"],
                  redirdev={"type": "redirdev", "device": "tcp", "alias": "ua-redir1",
                            "host": "127.0.0.1", "port": port})
        assert res["device"] == "tcp" and res["address"]["type"] == "usb"
        assert rpc("VM.hotunplugRedirdev", vmId=vm["id"], redirdev={"alias": "ua-redir1"})["status"] == "removed"


def test_usb_controller_is_refused_on_a_running_vm(rpc, vm):
    before = devices_by_alias(rpc, vm["id"])
    with pytest.raises(RpcError) as e:
        rpc("VM.addController", vmId=vm["id"], controller={"type": "controller", "device": "usb",
                                                           "model": "ich9-ehci1", "index": 1, "alias": "ua-ctl1"})
    assert e.value.code == 303
    assert devices_by_alias(rpc, vm["id"]) == before


def test_live_usb_passthrough_fails_with_a_coded_error_here(rpc, vm):
    """No host USB on this machine: libvirt refuses, the agent answers 301 and the VM is unchanged."""
    before = devices_by_alias(rpc, vm["id"])
    with pytest.raises(RpcError) as e:
        rpc("VM.hotplugHostdev", vmId=vm["id"], hostdev={"type": "hostdev", "device": "usb", "alias": "ua-usb9",
                                                         "source": {"portPath": "2-1.4"}})
    assert e.value.code == 301 and e.value.data["libvirtCode"]
    assert devices_by_alias(rpc, vm["id"]) == before


def test_hostdev_outside_the_whitelist_is_refused(rpc, vm):
    with pytest.raises(RpcError) as e:
        rpc("VM.hotplugHostdev", vmId=vm["id"], hostdev={"type": "hostdev", "device": "usb", "alias": "ua-usb8",
                                                         "source": {"vendor": "0x046d", "product": "0xc52b"}})
    assert e.value.code == 307


def test_guest_still_has_its_first_nic(vm):
    nets = guest_nets(vm["serial"])
    assert MAC0 in nets.values()


def test_unplug_verbs_refuse_another_kinds_alias(rpc, vm):
    """hotunplugNic once removed a SPICE redirection device, hotunplugHostdev a NIC."""
    rpc("VM.hotplugRedirdev", vmId=vm["id"], redirdev={"type": "redirdev", "device": "spicevmc", "alias": "ua-redir9"})
    try:
        with pytest.raises(RpcError) as e:
            rpc("VM.hotunplugNic", vmId=vm["id"], nic={"alias": "ua-redir9"})
        assert e.value.code == 304 and e.value.data["kind"] == "redirdev"
        with pytest.raises(RpcError) as e:
            rpc("VM.hotunplugHostdev", vmId=vm["id"], hostdev={"alias": "ua-nic0"})
        assert e.value.code == 304 and e.value.data["kind"] == "interface"
        assert {"ua-redir9", "ua-nic0"} <= set(devices_by_alias(rpc, vm["id"]))
    finally:
        rpc("VM.hotunplugRedirdev", vmId=vm["id"], redirdev={"alias": "ua-redir9"})


def test_hotplug_nic_with_vdsm_params_and_no_alias(rpc, vm):
    """VDSM's hotplugNic params carry no alias: the agent names the NIC and answers the name."""
    mac = "56:6f:1a:10:00:0a"
    params = {k: v for k, v in nic("unused", mac).items() if k != "alias"}
    res = rpc("VM.hotplugNic", vmId=vm["id"], nic=params)
    assert res["alias"].startswith("ua-") and res["macAddr"] == mac
    assert devices_by_alias(rpc, vm["id"])[res["alias"]]["macAddr"] == mac
    wait_for_serial(vm["serial"], rf"PB-NETS:.*{mac}", timeout=30)
    assert rpc("VM.hotunplugNic", vmId=vm["id"], nic={"alias": res["alias"]})["status"] == "removed"


def test_hotplug_nic_with_boot_order(rpc, vm, libvirt_uri):
    """libvirt refuses a device with <boot order> next to <os><boot dev>, which it adds itself when
    no device has an order: the agent's domains have per-device boot order only."""
    import libvirt
    from lxml import etree

    mac = "56:6f:1a:10:00:0b"
    res = rpc("VM.hotplugNic", vmId=vm["id"], nic=nic("ua-boot1", mac, bootOrder=1))
    try:
        assert res["bootOrder"] == 1
        conn = libvirt.open(libvirt_uri)
        try:
            live = etree.fromstring(conn.lookupByUUIDString(vm["id"]).XMLDesc(0))
        finally:
            conn.close()
        assert live.find("os/boot") is None
        iface = live.xpath("devices/interface[alias/@name='ua-boot1']")[0]
        assert iface.find("boot").get("order") == "1"
        wait_for_serial(vm["serial"], rf"PB-NETS:.*{mac}", timeout=30)
    finally:
        assert rpc("VM.hotunplugNic", vmId=vm["id"], nic={"alias": "ua-boot1"})["status"] == "removed"


def test_guest_has_only_the_default_usb_controller(vm):
    """pc's default piix3-uhci, and no other USB host controller (see test_usb_controllers)."""
    from tests.integration.guest import guest_usb_controllers

    assert [h["kind"] for h in guest_usb_controllers(vm["serial"]).values()] == ["uhci"]
