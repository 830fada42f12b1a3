from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from vdsm_plugin import contract, hostdevs, validation
from vdsm_plugin.errors import AgentError
from vdsm_plugin.whitelist import Whitelist

FIXTURES = Path(__file__).parent / "fixtures"
NODEDEV = FIXTURES / "nodedev"


def xml(name: str) -> str:
    return (NODEDEV / f"{name}.xml").read_text()


def all_xmls() -> list[str]:
    return [p.read_text() for p in sorted(NODEDEV.glob("*.xml"))]


@pytest.fixture
def devices() -> list[dict]:
    return hostdevs.inventory(all_xmls(), Whitelist())


def by_name(devs: list[dict], name: str) -> dict:
    return next(d for d in devs if d["name"] == name)


# -- parse_nodedev -----------------------------------------------------------------------------------
def test_usb_stick_with_serial_nested_behind_a_hub():
    dev = hostdevs.parse_nodedev(xml("usb_stick_serial"))
    assert dev == {
        "name": "usb_1_4_2", "capability": "usb_device", "vendorId": "136b", "productId": "0003",
        "vendorName": "STEC", "productName": "Flash Drive", "bus": 1, "device": 7, "portPath": "1-4.2",
        "serial": "STEC0003A1B2C3", "pciAddress": None, "iommuGroup": None, "driver": "usb",
        "parent": "usb_1_4", "allowed": False, "attachedTo": None,
    }
    assert list(dev) == list(hostdevs.FIELDS)


def test_usb_device_without_serial_or_names():
    dev = hostdevs.parse_nodedev(xml("usb_token_noname"))
    assert dev["serial"] is None
    assert (dev["vendorId"], dev["productId"]) == ("1050", "0407")
    assert dev["vendorName"] is None and dev["productName"] is None
    assert (dev["bus"], dev["device"], dev["portPath"]) == (2, 4, "2-2")


def test_usb_serial_read_at_the_sysfs_path_when_libvirt_gives_none():
    # libvirt 9.0's usb_device capability has no <serial>: a real stick's serial is only in sysfs.
    seen = []
    dev = hostdevs.parse_nodedev(xml("usb_token_noname"), serial_of=lambda path: seen.append(path) or "YK0001")
    assert dev["serial"] == "YK0001"
    assert seen == ["/sys/devices/pci0000:00/0000:00:1d.0/usb2/2-2"]
    listed = hostdevs.inventory([xml("usb_token_noname")], Whitelist(), serial_of=lambda path: "YK0001")
    assert listed[0]["serial"] == "YK0001"


def test_sysfs_serial(tmp_path, monkeypatch):
    device = tmp_path / "devices" / "usb1" / "1-3"
    device.mkdir(parents=True)
    (device / "serial").write_text("STICK01\n")
    monkeypatch.setattr(hostdevs, "SYSFS_DEVICES", f"{tmp_path}/devices/")
    assert hostdevs.sysfs_serial(str(device)) == "STICK01"
    assert hostdevs.sysfs_serial(str(device.parent)) is None          # no serial file
    assert hostdevs.sysfs_serial(f"{tmp_path}/devices/../devices/usb1/1-3") is None
    assert hostdevs.sysfs_serial("/etc") is None                       # never outside sysfs


def test_usb_hub_has_its_own_port_path():
    dev = hostdevs.parse_nodedev(xml("usb_hub"))
    assert (dev["name"], dev["portPath"], dev["parent"]) == ("usb_1_4", "1-4", "usb_usb1")


def test_root_hub_sits_on_no_port():
    dev = hostdevs.parse_nodedev(xml("usb_root_hub"))
    assert dev["portPath"] is None
    assert (dev["bus"], dev["device"], dev["vendorId"]) == (1, 1, "1d6b")
    assert hostdevs.is_root_hub(dev)


def test_pci_nic_with_iommu_group_and_driver():
    dev = hostdevs.parse_nodedev(xml("pci_nic"))
    assert dev == {
        "name": "pci_0000_02_00_0", "capability": "pci", "vendorId": "8086", "productId": "10c9",
        "vendorName": "Intel Corporation", "productName": "82576 Gigabit Network Connection",
        "bus": None, "device": None, "portPath": None, "serial": None, "pciAddress": "0000:02:00.0",
        "iommuGroup": 12, "driver": "igb", "parent": "pci_0000_00_1c_0", "allowed": False,
        "attachedTo": None,
    }


def test_pci_device_without_driver_or_iommu_group():
    dev = hostdevs.parse_nodedev(xml("pci_nodriver"))
    assert dev["driver"] is None
    assert dev["iommuGroup"] is None
    assert dev["pciAddress"] == "0000:03:00.1"


@pytest.mark.parametrize("name", ["usb_interface", "net_eth0"])
def test_other_capabilities_are_not_host_devices(name):
    assert hostdevs.parse_nodedev(xml(name)) is None


def test_port_path_falls_back_to_the_libvirt_name_without_a_sysfs_path():
    text = xml("usb_stick_serial").replace(
        "<path>/sys/devices/pci0000:00/0000:00:14.0/usb1/1-4/1-4.2</path>", "")
    assert hostdevs.parse_nodedev(text)["portPath"] == "1-4.2"


@pytest.mark.parametrize("path, expected", [
    ("/sys/devices/pci0000:00/0000:00:14.0/usb1/1-4/1-4.2", "1-4.2"),
    ("/sys/devices/pci0000:00/0000:00:14.0/usb1/1-4/1-4.2/1-4.2.3/", "1-4.2.3"),
    ("/sys/devices/pci0000:00/0000:00:14.0/usb3", None),
    ("/sys/devices/pci0000:00/0000:00:14.0/usb1/1-4/1-4:1.0", None),
    (None, None),
])
def test_port_path_from_sysfs(path, expected):
    assert hostdevs.port_path_from_sysfs(path) == expected


def test_hardened_parser_does_not_expand_entities():
    evil = ('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            + xml("usb_token_noname").replace("<product id='0x0407'/>", "<product id='0x0407'>&x;</product>"))
    dev = hostdevs.parse_nodedev(evil)
    assert "root" not in (dev["productName"] or "")


@pytest.mark.parametrize("text", ["<device><name>x</name>", "<node/>",
                                  "<device><name>usb_1_1</name><capability type='usb_device'>"
                                  "<bus>1</bus><device>2</device></capability></device>"])
def test_malformed_documents_raise_valueerror(text):
    with pytest.raises(ValueError):
        hostdevs.parse_nodedev(text)


# -- inventory ---------------------------------------------------------------------------------------
def test_inventory_lists_usb_and_pci_sorted_and_valid_against_the_contract(devices):
    assert [d["name"] for d in devices] == sorted(
        ["pci_0000_02_00_0", "pci_0000_03_00_1", "usb_1_4", "usb_1_4_2", "usb_2_1", "usb_2_2", "usb_usb1"])
    result_schema = contract.verbs()["Host.hostdevListByCaps"]["result"]
    jsonschema.validate({"devices": devices}, result_schema)


def test_inventory_allowed_follows_the_whitelist_and_never_a_root_hub(devices):
    allowed = {d["name"] for d in devices if d["allowed"]}
    # switch off: every USB device but the root hub; empty PCI whitelist: no PCI device.
    assert allowed == {"usb_1_4", "usb_1_4_2", "usb_2_1", "usb_2_2"}
    strict = hostdevs.inventory(all_xmls(), Whitelist(usb_switch="on", usb=[{"vendor": "1050"}],
                                                      pci=[{"vendor_id": "8086"}]))
    assert {d["name"] for d in strict if d["allowed"]} == {"usb_2_2", "pci_0000_02_00_0"}


def test_inventory_fills_attached_to_and_skips_unparseable_documents():
    devs = hostdevs.inventory(all_xmls() + ["<device>"], Whitelist(),
                              attached={"usb_2_1": "2f1b8a40-34d8-4b7b-9f0a-7b7a0c7e1a11"})
    assert by_name(devs, "usb_2_1")["attachedTo"] == "2f1b8a40-34d8-4b7b-9f0a-7b7a0c7e1a11"
    assert all(d["attachedTo"] is None for d in devs if d["name"] != "usb_2_1")
    assert len(devs) == 7


# -- resolve_usb -------------------------------------------------------------------------------------
def test_resolve_usb_by_vendor_product_unique(devices):
    assert hostdevs.resolve_usb({"vendor": "0x1050", "product": "0x0407"}, devices)["name"] == "usb_2_2"


@pytest.mark.parametrize("vendor, product", [("0x1050", "0x0407"), ("1050", "407"), ("0X1050", "0407")])
def test_resolve_usb_normalises_hex_forms(devices, vendor, product):
    assert hostdevs.resolve_usb({"vendor": vendor, "product": product}, devices)["name"] == "usb_2_2"


def test_resolve_usb_two_identical_sticks_are_ambiguous(devices):
    with pytest.raises(AgentError) as e:
        hostdevs.resolve_usb({"vendor": "0x136B", "product": "0x0003"}, devices)
    assert e.value.name == "hostdevAmbiguous"
    assert e.value.data["candidates"] == ["usb_1_4_2", "usb_2_1"]
    assert e.value.code == 311


def test_resolve_usb_vendor_product_missing(devices):
    with pytest.raises(AgentError) as e:
        hostdevs.resolve_usb({"vendor": "0xdead", "product": "0xbeef"}, devices)
    assert e.value.name == "hostdevMissing"


def test_resolve_usb_by_bus_device(devices):
    assert hostdevs.resolve_usb({"bus": 2, "device": 3}, devices)["name"] == "usb_2_1"
    with pytest.raises(AgentError) as e:
        hostdevs.resolve_usb({"bus": 2, "device": 9}, devices)
    assert e.value.name == "hostdevMissing"


def test_resolve_usb_bus_device_must_agree_with_vendor_product(devices):
    src = {"vendor": "0x136b", "product": "0x0003", "bus": 2, "device": 3}
    assert hostdevs.resolve_usb(src, devices)["name"] == "usb_2_1"
    with pytest.raises(AgentError) as e:  # something else now has that number
        hostdevs.resolve_usb({**src, "device": 4}, devices)
    assert e.value.name == "hostdevMissing"


def test_resolve_usb_by_port_path_gives_the_current_bus_device(devices):
    dev = hostdevs.resolve_usb({"portPath": "1-4.2"}, devices)
    assert (dev["name"], dev["bus"], dev["device"]) == ("usb_1_4_2", 1, 7)
    # The stick is re-plugged into the same port: a new device number, the same port path.
    replugged = hostdevs.inventory([xml("usb_stick_serial").replace("<device>7</device>", "<device>12</device>")],
                                   Whitelist())
    assert hostdevs.resolve_usb({"portPath": "1-4.2"}, replugged)["device"] == 12
    with pytest.raises(AgentError) as e:
        hostdevs.resolve_usb({"portPath": "3-1"}, devices)
    assert e.value.name == "hostdevMissing"


def test_resolve_usb_by_serial(devices):
    dev = hostdevs.resolve_usb({"serial": "STEC0003A1B2C3"}, devices)
    assert (dev["name"], dev["bus"], dev["device"]) == ("usb_1_4_2", 1, 7)
    with pytest.raises(AgentError) as e:
        hostdevs.resolve_usb({"serial": "NO-SUCH-SERIAL"}, devices)
    assert e.value.name == "hostdevMissing"
    twins = [{**d, "name": f"{d['name']}_{i}"} for i, d in enumerate([by_name(devices, "usb_1_4_2")] * 2)]
    with pytest.raises(AgentError) as e:
        hostdevs.resolve_usb({"serial": "STEC0003A1B2C3"}, twins)
    assert e.value.name == "hostdevAmbiguous"


@pytest.mark.parametrize("source, valid", [
    ({"serial": "STICK01"}, True),
    ({"serial": "STICK01", "vendor": "46f4", "product": "0001"}, False),
    ({"serial": "STICK01", "portPath": "1-3"}, False),
    ({"serial": "<x>"}, False),
])
def test_contract_takes_a_usb_source_by_serial(source, valid):
    params = {"vmId": "0b6b8e53-4c2a-4f31-9a55-3f1f0b6a2f10",
              "hostdev": {"type": "hostdev", "device": "usb", "source": source}}
    if valid:
        validation.check_params("VM.hotplugHostdev", params)
    else:
        with pytest.raises(AgentError) as e:
            validation.check_params("VM.hotplugHostdev", params)
        assert e.value.name == "invalidParams"


def test_resolve_usb_by_node_device(devices):
    assert hostdevs.resolve_usb({"nodeDev": "usb_1_4_2"}, devices)["portPath"] == "1-4.2"
    with pytest.raises(AgentError) as e:
        hostdevs.resolve_usb({"nodeDev": "usb_9_9"}, devices)
    assert e.value.name == "hostdevMissing"
    with pytest.raises(AgentError):  # a PCI device is not a USB device
        hostdevs.resolve_usb({"nodeDev": "pci_0000_02_00_0"}, devices)


def test_resolve_usb_without_a_form_is_invalid(devices):
    with pytest.raises(AgentError) as e:
        hostdevs.resolve_usb({}, devices)
    assert e.value.name == "invalidParams"


def test_resolve_returns_a_copy(devices):
    dev = hostdevs.resolve_usb({"nodeDev": "usb_2_2"}, devices)
    dev["allowed"] = "changed"
    assert by_name(devices, "usb_2_2")["allowed"] is True


# -- resolve_pci -------------------------------------------------------------------------------------
def test_resolve_pci_by_address(devices):
    src = {"domain": "0x0000", "bus": "0x02", "slot": "0x00", "function": "0x0"}
    assert hostdevs.resolve_pci(src, devices)["name"] == "pci_0000_02_00_0"
    assert hostdevs.resolve_pci({"domain": "0x0", "bus": "0x3", "slot": "0x0", "function": "0x1"},
                                devices)["name"] == "pci_0000_03_00_1"


def test_resolve_pci_by_node_device_and_missing(devices):
    assert hostdevs.resolve_pci({"nodeDev": "pci_0000_03_00_1"}, devices)["driver"] is None
    for src in ({"nodeDev": "pci_0000_09_00_0"},
                {"domain": "0x0000", "bus": "0x09", "slot": "0x00", "function": "0x0"}):
        with pytest.raises(AgentError) as e:
            hostdevs.resolve_pci(src, devices)
        assert e.value.name == "hostdevMissing"
    with pytest.raises(AgentError) as e:
        hostdevs.resolve_pci({"bus": "0x02"}, devices)
    assert e.value.name == "invalidParams"


# -- matching a domain's hostdev to the inventory ------------------------------------------------------
def test_source_matches_usb_by_bus_device_then_vendor_product(devices):
    stick = by_name(devices, "usb_2_1")
    assert hostdevs.source_matches("usb", {"bus": "2", "device": "3"}, stick)
    assert hostdevs.source_matches("usb", {"vendor": "0x136b", "product": "0x0003", "bus": 2, "device": 3}, stick)
    assert not hostdevs.source_matches("usb", {"vendor": "0x136b", "product": "0x0003", "bus": 1, "device": 7}, stick)
    assert hostdevs.source_matches("usb", {"vendorId": "136b", "productId": "0003"}, stick)
    assert not hostdevs.source_matches("pci", {"bus": "2", "device": "3"}, stick)
    assert hostdevs.usb_hostdev_key(stick) == ("usb", 2, 3)
    assert hostdevs.source_key("usb", {"bus": 2, "device": 3}) == hostdevs.hostdev_key(stick)


def test_source_matches_pci_by_address(devices):
    nic = by_name(devices, "pci_0000_02_00_0")
    assert hostdevs.source_matches("pci", {"domain": "0x0000", "bus": "0x02", "slot": "0x00", "function": "0x0"}, nic)
    assert not hostdevs.source_matches("pci", {"domain": "0x0000", "bus": "0x02", "slot": "0x00",
                                               "function": "0x1"}, nic)
    assert hostdevs.pci_hostdev_key(nic) == ("pci", "0000:02:00.0")


def test_attached_map_from_running_domains(devices):
    vm_a, vm_b, vm_c = ("11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222",
                        "33333333-3333-3333-3333-333333333333")
    held = [
        (vm_a, "usb", {"vendor": "0x136b", "product": "0x0003", "bus": "1", "device": "7"}),
        (vm_b, "pci", {"domain": "0x0000", "bus": "0x02", "slot": "0x00", "function": "0x0"}),
        (vm_c, "usb", {"vendor": "0x136b", "product": "0x0003"}),  # ambiguous: counted for neither
        (vm_c, "usb", {"vendor": "0x1050", "product": "0x0407"}),  # unique: counted
    ]
    assert hostdevs.attached_map(held, devices) == {"usb_1_4_2": vm_a, "pci_0000_02_00_0": vm_b, "usb_2_2": vm_c}


# -- the real libvirt test driver ----------------------------------------------------------------------
def test_inventory_from_libvirt_test_driver():
    libvirt = pytest.importorskip("libvirt")
    libvirt.registerErrorHandler(lambda *_: None, None)
    conn = libvirt.open(f"test://{(FIXTURES / 'libvirt_test_node.xml').resolve()}")
    try:
        xmls = [d.XMLDesc(0) for d in conn.listAllDevices(0)]
        usb_only = [d.XMLDesc(0) for d in
                    conn.listAllDevices(libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_USB_DEV)]
    finally:
        conn.close()
    wl = Whitelist.from_config({"usb_white_list_switch": "on",
                                "usb_passthrough_whitelist": [{"vendor": "0x136b", "product": "0x0003"}],
                                "pci_passthrough_whitelist": [{"vendor_id": "8086", "product_id": "10c9"}]})
    devs = hostdevs.inventory(xmls, wl, attached={"usb_2_1": "44444444-4444-4444-4444-444444444444"})
    jsonschema.validate({"devices": devs}, contract.verbs()["Host.hostdevListByCaps"]["result"])
    assert [d["name"] for d in devs] == ["pci_0000_02_00_0", "pci_0000_03_00_1", "usb_1_4", "usb_1_4_2",
                                         "usb_2_1", "usb_usb1"]
    stick = by_name(devs, "usb_1_4_2")
    assert {k: stick[k] for k in ("capability", "vendorId", "productId", "vendorName", "productName", "bus",
                                  "device", "portPath", "parent", "allowed", "attachedTo")} == {
        "capability": "usb_device", "vendorId": "136b", "productId": "0003", "vendorName": "STEC",
        "productName": "Flash Drive", "bus": 1, "device": 7, "portPath": "1-4.2", "parent": "usb_1_4",
        "allowed": True, "attachedTo": None}
    assert by_name(devs, "usb_2_1")["attachedTo"] == "44444444-4444-4444-4444-444444444444"
    assert by_name(devs, "usb_1_4")["allowed"] is False          # not in the USB whitelist
    assert by_name(devs, "usb_usb1")["portPath"] is None
    nic = by_name(devs, "pci_0000_02_00_0")
    assert (nic["pciAddress"], nic["iommuGroup"], nic["allowed"]) == ("0000:02:00.0", 12, True)
    other = by_name(devs, "pci_0000_03_00_1")
    assert (other["pciAddress"], other["iommuGroup"], other["allowed"]) == ("0000:03:00.1", None, False)
    assert {d["name"] for d in hostdevs.inventory(usb_only, wl)} == {"usb_1_4", "usb_1_4_2", "usb_2_1", "usb_usb1"}
    with pytest.raises(AgentError) as e:
        hostdevs.resolve_usb({"vendor": "136b", "product": "3"}, devs)
    assert e.value.name == "hostdevAmbiguous"
    assert hostdevs.resolve_usb({"portPath": "2-1"}, devs)["device"] == 3
