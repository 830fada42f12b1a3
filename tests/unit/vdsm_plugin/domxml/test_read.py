"""Reading a libvirt-style live domain back, finding devices, and editing in place without losing
what Plugboard does not know."""
from __future__ import annotations

import copy

import jsonschema
import pytest

from tests.unit.vdsm_plugin.domxml.cases import DEVICES, VM_ID, VM_Q35, VM_Q35_RESOLVED
from tests.unit.vdsm_plugin.domxml.golden import canonical, fixture
from vdsm_plugin import contract, domxml

LIVE = fixture("live_q35.xml")


def _pci(bus, slot="0x00", function="0x0"):
    return {"type": "pci", "domain": "0x0000", "bus": bus, "slot": slot, "function": function}


EXPECTED = [
    {"type": "controller", "device": "usb", "alias": "usb", "address": _pci("0x02"),
     "model": "qemu-xhci", "index": 0, "ports": 15},
    {"type": "controller", "device": "usb", "alias": "ua-ehci", "address": _pci("0x00", "0x1d", "0x7"),
     "model": "ich9-ehci1", "index": 1},
    {"type": "interface", "device": "bridge", "alias": "ua-nic1", "address": _pci("0x01"), "bootOrder": 1,
     "macAddr": "52:54:00:AB:00:01", "network": "pbbr0", "nicModel": "virtio", "linkActive": False,
     "specParams": {"mtu": 1400}},
    {"type": "interface", "device": "network", "alias": "net1", "address": _pci("0x03"),
     "macAddr": "52:54:00:ab:00:02", "network": "default", "nicModel": "e1000e", "linkActive": True},
    {"type": "interface", "device": "bridgeless", "alias": "ua-nic3", "address": _pci("0x04", "0x01"),
     "macAddr": "52:54:00:ab:00:03", "network": "pbtap0", "nicModel": "rtl8139", "linkActive": True},
    {"type": "interface", "device": "user", "alias": "ua-nic4", "address": _pci("0x05"),
     "macAddr": "52:54:00:ab:00:04", "nicModel": "virtio", "linkActive": True},
    {"type": "interface", "device": "sriov", "alias": "ua-vf1", "address": _pci("0x06"),
     "macAddr": "52:54:00:ab:00:05", "linkActive": True, "source": _pci("0x3b", "0x02", "0x1"),
     "specParams": {"vlan": 42}},
    {"type": "hostdev", "device": "usb", "alias": "ua-usb1", "address": {"type": "usb", "bus": "0", "port": "1"},
     "source": {"vendor": "0x046d", "product": "0xc52b", "bus": "1", "device": "3"},
     "startupPolicy": "optional", "managed": False},
    {"type": "hostdev", "device": "pci", "alias": "ua-gpu", "address": _pci("0x07"),
     "source": {"domain": "0x0000", "bus": "0x3b", "slot": "0x00", "function": "0x0"}, "managed": True},
    {"type": "redirdev", "device": "spicevmc", "alias": "ua-redir1",
     "address": {"type": "usb", "bus": "0", "port": "2"}},
    {"type": "redirdev", "device": "tcp", "alias": "redir1", "address": {"type": "usb", "bus": "0", "port": "3"},
     "mode": "connect", "host": "192.0.2.10", "port": 4000},
]


def test_read_devices_of_a_live_domain():
    assert domxml.read_devices(domxml.parse(LIVE)) == EXPECTED


def test_read_devices_accepts_text():
    assert domxml.read_devices(LIVE) == EXPECTED


def test_reported_devices_follow_the_contract():
    schema = {"definitions": contract.definitions(), "$ref": "#/definitions/reportedDevice"}
    devs = domxml.read_devices(LIVE)
    assert devs, "the live fixture must have devices, or this test checks nothing"
    for dev in devs:
        jsonschema.validate(dev, schema)


def test_pci_address_keeps_multifunction_and_all_attributes_as_strings():
    root_port = domxml.find_device(domxml.parse(LIVE), "pci.1")
    assert domxml.device_to_dict(root_port)["address"] == {**_pci("0x00", "0x02"), "multifunction": "on"}


def test_device_to_dict_of_other_elements_has_the_common_keys():
    dom = domxml.parse(LIVE)
    assert domxml.device_to_dict(domxml.find_device(dom, "balloon0")) == {
        "type": "memballoon", "device": "memballoon", "alias": "balloon0", "address": _pci("0x08")}
    assert domxml.device_to_dict(domxml.find_device(dom, "ide"))["device"] == "sata"


def test_alias_and_mac_lookups():
    dom = domxml.parse(LIVE)
    assert domxml.find_device(dom, "ua-gpu").tag == "hostdev"
    assert domxml.find_device(dom, "ua-missing") is None
    assert domxml.find_device(dom, "x' or '1'='1") is None
    assert domxml.device_alias(domxml.find_nic_by_mac(dom, "52:54:00:ab:00:01")) == "ua-nic1"
    assert domxml.find_nic_by_mac(dom, "52:54:00:AB:00:05").get("type") == "hostdev"
    assert domxml.find_nic_by_mac(dom, "52:54:00:00:00:99") is None
    assert domxml.device_alias(domxml.find_device(dom, "ide").getparent()) is None


def test_used_indexes():
    dom = domxml.parse(LIVE)
    assert domxml.used_indexes(dom) == {0, 1}
    assert domxml.used_indexes(dom, "usb") == {0, 1}
    assert domxml.used_indexes(dom, "pci") == {0, 1}
    assert domxml.used_indexes(dom, "scsi") == set()


@pytest.mark.parametrize("name", sorted(DEVICES))
def test_built_devices_read_back(name):
    dev, resolved = DEVICES[name]
    got = domxml.device_to_dict(domxml.build_device(dev, resolved))
    assert (got["type"], got["alias"], got["address"]) == (dev["type"], dev["alias"], dev.get("address"))
    assert got["device"] == dev["device"]
    for key in ("macAddr", "network", "index", "model", "bootOrder", "host", "port", "ports"):
        if key in dev:
            assert got[key] == dev[key], key
    if "linkActive" in dev:
        assert got["linkActive"] is dev["linkActive"]
    for key, value in (dev.get("specParams") or {}).items():
        if key == "hostdevAddress":
            assert got["source"] == {"type": "pci", **value}
        else:
            assert got["specParams"][key] == value


def test_set_link_state_edits_in_place():
    dom = domxml.parse(LIVE)
    nic = domxml.find_device(dom, "ua-nic1")
    assert domxml.set_link_state(nic, True) is nic
    assert nic.findall("link")[0].get("state") == "up" and len(nic.findall("link")) == 1
    net1 = domxml.find_device(dom, "net1")
    domxml.set_link_state(net1, False)
    assert domxml.device_to_dict(net1)["linkActive"] is False
    assert net1.find("driver") is None and nic.find("driver").get("queues") == "2"


def test_strip_address_keeps_the_source_address():
    dom = domxml.parse(LIVE)
    vf = domxml.find_device(dom, "ua-vf1")
    assert domxml.strip_address(vf) is vf
    assert vf.find("address") is None
    assert vf.find("source/address").get("bus") == "0x3b"
    usb = domxml.strip_address(domxml.find_device(dom, "ua-usb1"))
    assert usb.find("source/address").attrib == {"bus": "1", "device": "3"}
    assert domxml.device_to_dict(usb)["address"] is None


def test_unknown_elements_and_attributes_survive_a_round_trip():
    dom = domxml.parse(LIVE)
    domxml.set_link_state(domxml.find_device(dom, "ua-nic1"), True)
    domxml.strip_address(domxml.find_device(dom, "ua-gpu"))
    domxml.set_metadata(dom, "osType", "rhel_9x64")
    again = domxml.parse(domxml.tostring(dom))
    for path in ("devices/futureDevice/knob[@level='11']", "devices/interface/rom[@bar='off']",
                 "devices/interface/acpi[@index='3']", "devices/interface/driver[@queues='2']",
                 "devices/interface/source[@portid]", "devices/graphics/image[@compression='off']",
                 "devices/hostdev/rom[@bar='on']", "devices/memballoon/stats", "resource/partition",
                 "cpu/feature[@name='x2apic']", "seclabel", "os/boot[@dev='hd']"):
        assert again.find(path) is not None, path
    assert again.get("id") == "7"
    assert again.xpath("//comment()")
    ns = {"q": "http://libvirt.org/schemas/domain/qemu/1.0", "o": "https://example.org/other/1"}
    assert again.xpath("q:commandline/q:arg/@value", namespaces=ns) == ["-no-user-config"]
    assert again.xpath("metadata/o:info/text()", namespaces=ns) == ["kept as is"]
    assert domxml.get_metadata(again, "osType") == "rhel_9x64"
    assert domxml.get_metadata(again, "customProperties") == {"sap_agent": "true"}


def test_untouched_round_trip_is_canonically_identical():
    assert canonical(domxml.tostring(domxml.parse(LIVE))) == canonical(LIVE)


def test_tostring_of_a_device_has_no_siblings_nor_tail():
    dom = domxml.parse(LIVE)
    nic = domxml.find_device(dom, "ua-nic1")
    nic.tail = "\n    "
    text = domxml.tostring(nic)
    assert text.startswith("<interface") and text.rstrip().endswith("</interface>")
    assert domxml.parse(text).tag == "interface"


def test_metadata_set_get_remove():
    dom = domxml.parse(domxml.build_domain(VM_ID, {"name": "m", "memSize": 64, "vcpus": 1, "machine": "pc"}))
    assert domxml.get_metadata(dom, "osType") is None
    domxml.set_metadata(dom, "customProperties", {"a": "1"})
    domxml.set_metadata(dom, "osType", "windows_2022")
    domxml.set_metadata(dom, "osType", "rhel_9x64")
    assert [c.tag for c in dom][:3] == ["name", "uuid", "metadata"]
    assert domxml.get_metadata(dom, "osType") == "rhel_9x64"
    assert domxml.get_metadata(dom, "customProperties") == {"a": "1"}
    domxml.set_metadata(dom, "osType", None)
    assert domxml.get_metadata(dom, "osType") is None
    assert domxml.get_metadata(dom, "customProperties") == {"a": "1"}


def test_build_then_read_a_whole_domain():
    dom = domxml.parse(domxml.build_domain(VM_ID, VM_Q35, resolved=VM_Q35_RESOLVED))
    got = {d["alias"]: d for d in domxml.read_devices(dom)}
    assert set(got) == {d["alias"] for d in VM_Q35["devices"]}
    assert got["ua-usb1"]["source"] == {"vendor": "0x046d", "product": "0xc52b", "bus": "1", "device": "3"}
    assert got["ua-pci1"]["source"] == {"domain": "0x0000", "bus": "0x3b", "slot": "0x00", "function": "0x0"}


def test_reading_does_not_change_the_document():
    dom = domxml.parse(LIVE)
    before = copy.deepcopy(dom)
    domxml.read_devices(dom)
    assert canonical(domxml.tostring(dom)) == canonical(domxml.tostring(before))
