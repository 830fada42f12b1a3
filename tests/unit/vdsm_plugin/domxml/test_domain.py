"""Whole domains from vmParams: golden files, libvirt's schema, and the choices build_domain makes."""
from __future__ import annotations

import pytest
from lxml import etree

from tests.unit.vdsm_plugin.domxml.cases import DEVICES, VM_ID, VM_MINIMAL, VM_PC, VM_Q35, VM_Q35_RESOLVED
from tests.unit.vdsm_plugin.domxml.golden import assert_golden
from vdsm_plugin import domxml
from vdsm_plugin.errors import AgentError


def test_pc_domain_matches_golden():
    assert_golden("domain_pc.xml", domxml.build_domain(VM_ID, VM_PC))


def test_q35_domain_matches_golden():
    assert_golden("domain_q35.xml", domxml.build_domain(VM_ID, VM_Q35, resolved=VM_Q35_RESOLVED))


def test_minimal_domain_matches_golden():
    assert_golden("domain_minimal.xml", domxml.build_domain(VM_ID, VM_MINIMAL))


@pytest.mark.parametrize("params, resolved", [(VM_PC, None), (VM_Q35, VM_Q35_RESOLVED), (VM_MINIMAL, None)])
def test_domains_are_valid_for_libvirt(params, resolved, libvirt_rng):
    dom = etree.fromstring(domxml.build_domain(VM_ID, params, resolved=resolved))
    assert libvirt_rng.validate(dom), libvirt_rng.error_log


def _dom(**params):
    return domxml.parse(domxml.build_domain(VM_ID, {**VM_MINIMAL, **params}))


def test_tcg_and_no_host_cpu():
    dom = _dom()
    assert dom.get("type") == "qemu"
    assert dom.find("cpu") is None


def _root_ports(dom):
    pci = dom.findall("devices/controller[@type='pci']")
    assert (pci[0].get("model"), pci[0].get("index")) == ("pcie-root", "0")
    assert all(c.get("model") == "pcie-root-port" and c.get("index") is None for c in pci[1:])
    return len(pci) - 1


def test_q35_keeps_four_root_ports_free_by_default():
    """4 free + libvirt's default USB controller + the memballoon (checked against libvirt 9.0)."""
    params = {k: v for k, v in VM_MINIMAL.items() if k != "pciePorts"}
    assert _root_ports(domxml.parse(domxml.build_domain(VM_ID, params))) == 4 + 2


def test_q35_with_no_pcie_ports_has_no_spare_port():
    """libvirt adds a spare root port to a q35 domain that has none, but only the ports its devices
    need to one that has some (libvirt 9.0): pciePorts=0 gives one, libvirt adds the rest."""
    assert _root_ports(_dom(pciePorts=0)) == 1
    assert _root_ports(_dom(pciePorts=0, devices=[DEVICES["nic_user"][0], DEVICES["controller_usb_xhci"][0]])) == 1


def test_q35_adds_the_ports_its_devices_take():
    # xhci at index 2 + NIC take a port each, the PCI hostdev names root port 4, spicevmc/usb take none;
    # libvirt's default xhci (no index 0 given) and the memballoon one each
    dom = domxml.parse(domxml.build_domain(VM_ID, VM_Q35, resolved=VM_Q35_RESOLVED))
    assert _root_ports(dom) == 4 + 3 + 2


@pytest.mark.parametrize("devices, expected", [
    ([], 2),
    ([DEVICES["controller_usb_xhci"][0]], 3),
    ([{**DEVICES["controller_usb_xhci"][0], "index": 0}], 2),
    ([{**DEVICES["controller_usb_xhci"][0], "index": 0, "model": "none"}], 1),
    ([DEVICES["nic_bridge"][0]], 2),  # its address is on bus 0
    ([DEVICES["nic_user"][0], DEVICES["nic_sriov"][0], DEVICES["hostdev_pci_unmanaged"][0]], 5),
    ([DEVICES["hostdev_usb_resolved"][0], DEVICES["redirdev_tcp"][0], DEVICES["redirdev_spicevmc"][0]], 2),
])
def test_root_port_consumers(devices, expected):
    from vdsm_plugin.domxml.domain import root_port_consumers
    assert root_port_consumers(devices) == expected


def test_pc_has_no_pci_controllers_even_with_pcie_ports():
    dom = _dom(machine="pc", pciePorts=6)
    assert dom.findall("devices/controller") == []
    assert dom.find("os/type").get("machine") == "pc"


def test_no_usb_controller_is_added():
    """libvirt adds its default one (piix3-uhci / qemu-xhci) at index 0 itself."""
    assert domxml.used_indexes(_dom(), "usb") == set()
    assert domxml.used_indexes(domxml.parse(domxml.build_domain(VM_ID, VM_Q35, resolved=VM_Q35_RESOLVED))) == {2}


def test_serial_is_a_pty_without_serial_log():
    dom = _dom()
    assert dom.find("devices/serial").get("type") == "pty"
    assert dom.find("devices/console").get("type") == "pty"
    assert dom.find("devices/serial/source") is None


def test_serial_log_feeds_serial_and_console():
    dom = _dom(serialLog="/tmp/x.log")
    for tag in ("serial", "console"):
        assert dom.find(f"devices/{tag}").get("type") == "file"
        assert dom.find(f"devices/{tag}/source").get("path") == "/tmp/x.log"


@pytest.mark.parametrize("graphics, video", [("vnc", "vga"), ("spice", "qxl")])
def test_graphics_listen_locally(graphics, video):
    dom = _dom(graphics=graphics)
    g = dom.find("devices/graphics")
    assert (g.get("type"), g.get("listen"), g.get("autoport")) == (graphics, "127.0.0.1", "yes")
    assert dom.find("devices/video/model").get("type") == video


def test_graphics_none_has_no_graphics_nor_video():
    dom = _dom(graphics="none")
    assert dom.find("devices/graphics") is None and dom.find("devices/video") is None


def test_no_kernel_means_no_direct_boot_and_no_boot_dev():
    dom = _dom()
    assert [c.tag for c in dom.find("os")] == ["type"]


def test_metadata_keeps_os_type_and_custom_properties():
    dom = domxml.parse(domxml.build_domain(VM_ID, VM_PC))
    assert domxml.get_metadata(dom, "osType") == "other_linux"
    assert domxml.get_metadata(dom, "customProperties") == {"sap_agent": "true", "viodiskcache": "writeback"}
    # Without them the metadata holds only the agent's mark.
    bare = _dom()
    assert domxml.is_marked(bare) and domxml.get_metadata(bare, "osType") is None


def test_devices_are_built_by_build_device():
    dom = domxml.parse(domxml.build_domain(VM_ID, VM_Q35, resolved=VM_Q35_RESOLVED))
    usb = domxml.find_device(dom, "ua-usb1")
    assert usb.find("source/address").attrib == {"bus": "1", "device": "3"}
    assert [d["alias"] for d in domxml.read_devices(dom)] == [d["alias"] for d in VM_Q35["devices"]]


def test_duplicate_aliases_are_refused():
    nic = DEVICES["nic_user"][0]
    with pytest.raises(AgentError) as e:
        domxml.build_domain(VM_ID, {**VM_MINIMAL, "devices": [nic, nic]})
    assert e.value.name == "invalidParams"


def test_spicevmc_needs_spice_graphics():
    with pytest.raises(AgentError) as e:
        domxml.build_domain(VM_ID, {**VM_MINIMAL, "graphics": "vnc", "devices": [DEVICES["redirdev_spicevmc"][0]]})
    assert e.value.name == "invalidParams"


def test_two_usb_controllers_on_one_index_are_refused():
    ctl = DEVICES["controller_usb_xhci"][0]
    with pytest.raises(AgentError) as e:
        domxml.build_domain(VM_ID, {**VM_MINIMAL, "devices": [ctl, {**ctl, "alias": "ua-other"}]})
    assert e.value.name == "controllerIndexInUse"


def test_unresolved_hostdev_is_refused():
    dev = DEVICES["hostdev_pci"][0]  # names its source by node device only
    with pytest.raises(AgentError) as e:
        domxml.build_domain(VM_ID, {**VM_MINIMAL, "devices": [dev]})
    assert e.value.name == "invalidParams"


def _boot_orders(dom):
    return {domxml.device_alias(b.getparent()): int(b.get("order")) for b in dom.iterfind("devices/*/boot")}


def test_a_device_gets_the_last_boot_order_when_none_has_one():
    """libvirt 9.0 adds <os><boot dev='hd'/> to a definition in which no device has a <boot order>,
    and then refuses every device hot-plugged with one: the first NIC gets the last place instead."""
    dom = domxml.parse(domxml.build_domain(VM_ID, VM_Q35, resolved=VM_Q35_RESOLVED))
    assert dom.find("os/boot") is None
    assert _boot_orders(dom) == {"ua-nic2": domxml.LAST_BOOT_ORDER}


def test_boot_orders_given_are_kept_as_they_are():
    dom = domxml.parse(domxml.build_domain(VM_ID, VM_PC))
    assert _boot_orders(dom) == {"ua-nic1": 2}


def test_without_a_nic_another_bootable_device_gets_it():
    devices = [DEVICES["controller_usb_xhci"][0], DEVICES["redirdev_spicevmc"][0], DEVICES["hostdev_usb_resolved"][0]]
    dom = domxml.parse(domxml.build_domain(VM_ID, {**VM_MINIMAL, "graphics": "spice", "devices": devices},
                                           resolved=VM_Q35_RESOLVED))
    assert _boot_orders(dom) == {"ua-usb1": domxml.LAST_BOOT_ORDER}


def test_device_boot_replaces_os_boot_of_a_stored_definition():
    """What VM.start does to a definition libvirt gave <boot dev='hd'/> (no device had an order)."""
    dom = domxml.parse("""<domain type='qemu'><name>x</name><os><type>hvm</type><boot dev='hd'/>
        <bootmenu enable='no'/></os><devices><controller type='usb' index='0'/>
        <interface type='bridge'><mac address='52:54:00:00:00:01'/><source bridge='pbbr0'/>
        <alias name='ua-n'/><address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
        </interface></devices></domain>""")
    domxml.device_boot(dom)
    assert [c.tag for c in dom.find("os")] == ["type", "bootmenu"]
    nic = domxml.find_device(dom, "ua-n")
    assert [c.tag for c in nic] == ["mac", "source", "boot", "alias", "address"]
    assert _boot_orders(dom) == {"ua-n": domxml.LAST_BOOT_ORDER}
    assert domxml.device_to_dict(nic)["bootOrder"] == domxml.LAST_BOOT_ORDER


def test_no_bootable_device_no_boot_order():
    dom = _dom(devices=[DEVICES["controller_usb_xhci"][0]])
    assert _boot_orders(dom) == {} and dom.find("os/boot") is None


def _ehci(alias, index, **extra):
    return {"type": "controller", "device": "usb", "model": "ich9-ehci1", "index": index, "alias": alias, **extra}


@pytest.mark.parametrize("machine", ["pc", "q35"])
def test_lone_ehci_gets_function_0_of_a_free_slot(machine):
    """libvirt puts an ich9-ehci1 without companions at function 7 of an empty slot, where no guest
    looks: it gets function 0 of a free bus-0 slot from the top instead."""
    taken = {"type": "pci", "domain": "0x0000", "bus": "0x00", "slot": "0x1d", "function": "0x0"}
    nic = {**DEVICES["nic_user"][0], "address": taken}
    xhci = {"type": "controller", "device": "usb", "model": "nec-xhci", "index": 2, "alias": "ua-x"}
    dom = _dom(machine=machine, devices=[nic, _ehci("ua-e1", 1), xhci, _ehci("ua-e3", 3)])
    addr = {a: domxml.device_to_dict(domxml.find_device(dom, a))["address"] for a in ("ua-e1", "ua-e3", "ua-x")}
    assert addr["ua-e1"] == {**taken, "slot": "0x1c"} and addr["ua-e3"] == {**taken, "slot": "0x1b"}
    assert addr["ua-x"] is None                    # libvirt places it


def test_ehci_with_an_address_keeps_it():
    given = DEVICES["controller_usb"][0]           # ich9-ehci1 at 00:1d.7, as the caller asked
    dom = _dom(machine="pc", devices=[given])
    assert domxml.device_to_dict(domxml.find_device(dom, "ua-ctl1"))["address"] == given["address"]


def _usb_controller(alias, model, index, **extra):
    return {"type": "controller", "device": "usb", "model": model, "index": index, "alias": alias, **extra}


def test_companions_share_their_ehcis_index():
    devices = [_usb_controller("ua-ehci", "ich9-ehci1", 0)] + [
        _usb_controller(f"ua-uhci{n}", f"ich9-uhci{n}", 0, master={"startport": 2 * (n - 1)}) for n in (1, 2, 3)]
    dom = etree.fromstring(domxml.build_domain(VM_ID, {**VM_MINIMAL, "machine": "pc", "devices": devices}))
    read = {d["alias"]: d for d in domxml.read_devices(dom) if d["type"] == "controller"}
    assert read["ua-uhci3"]["master"] == {"startport": 4} and read["ua-uhci3"]["index"] == 0
    assert domxml.used_indexes(dom, "usb") == {0}


def test_two_controllers_at_one_index_without_master_are_refused():
    devices = [_usb_controller("ua-a", "ich9-ehci1", 0), _usb_controller("ua-b", "ich9-uhci1", 0)]
    with pytest.raises(AgentError) as err:
        domxml.build_domain(VM_ID, {**VM_MINIMAL, "machine": "pc", "devices": devices})
    assert err.value.name == "controllerIndexInUse"


def test_only_uhci_companions_take_a_master():
    with pytest.raises(AgentError) as err:
        domxml.build_device(_usb_controller("ua-x", "qemu-xhci", 1, master={"startport": 0}))
    assert err.value.name == "invalidParams"
