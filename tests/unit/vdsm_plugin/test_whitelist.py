from __future__ import annotations

import pytest

from vdsm_plugin.whitelist import Whitelist, WhitelistError

STICK = {"name": "usb_2_2", "capability": "usb_device", "vendorId": "136b", "productId": "0003",
         "bus": 2, "device": 2, "portPath": "2-1.3"}
OTHER = {"name": "usb_1_5", "capability": "usb_device", "vendorId": "1050", "productId": "0407",
         "bus": 1, "device": 5, "portPath": "1-2"}
NIC = {"name": "pci_0000_02_00_0", "capability": "pci", "vendorId": "8086", "productId": "10c9",
       "pciAddress": "0000:02:00.0"}
NIC_FN1 = {**NIC, "name": "pci_0000_02_00_1", "pciAddress": "0000:02:00.1"}
GPU = {"name": "pci_0000_01_00_0", "capability": "pci", "vendorId": "10de", "productId": "1eb8",
       "pciAddress": "0000:01:00.0"}


# -- USB -----------------------------------------------------------------------------------------------
def test_default_switch_off_allows_every_usb_device_and_no_pci_device():
    wl = Whitelist()
    assert wl.allows(STICK) and wl.allows(OTHER)
    assert not wl.allows(NIC)


def test_switch_off_ignores_the_usb_entries():
    wl = Whitelist.from_config({"usb_white_list_switch": "off",
                                "usb_passthrough_whitelist": [{"vendor": "0xffff"}]})
    assert wl.allows(OTHER)


def test_switch_on_with_the_seed_entry():
    wl = Whitelist.from_config({"usb_white_list_switch": "on", "usb_passthrough_whitelist":
                                [{"product": "0x0003", "vendor": "0x136b", "bus": "2", "device": "2"}]})
    assert wl.allows(STICK)
    assert not wl.allows(OTHER)
    assert not wl.allows({**STICK, "device": 3})  # re-plugged: a new device number


def test_switch_on_with_no_entries_allows_nothing():
    assert not Whitelist(usb_switch=True).allows(STICK)


@pytest.mark.parametrize("switch, expected", [("on", True), ("ON", True), (True, True), ("off", False),
                                              (False, False), ("yes", True), ("false", False)])
def test_switch_forms(switch, expected):
    assert Whitelist.from_config({"usb_white_list_switch": switch}).usb_switch is expected


@pytest.mark.parametrize("entry, allowed", [
    ({"vendor": "0x136b"}, True),
    ({"vendor": "0x1050"}, False),
    ({"product": "0x0003"}, True),
    ({"product": "0x0004"}, False),
    ({"bus": "2"}, True),
    ({"bus": 1}, False),
    ({"device": 2}, True),
    ({"device": "5"}, False),
    ({"port_path": "2-1.3"}, True),
    ({"port_path": "2-1"}, False),
    ({"vendor": "0x136b", "bus": "1"}, False),  # every given key must match
])
def test_each_usb_key_must_match(entry, allowed):
    assert Whitelist(usb_switch="on", usb=[entry]).allows(STICK) is allowed


@pytest.mark.parametrize("vendor", ["0x136b", "0x136B", "136b", "136B", "0X136b", 0x136B])
def test_usb_hex_forms(vendor):
    assert Whitelist(usb_switch=True, usb=[{"vendor": vendor, "product": "3"}]).allows(STICK)


def test_any_matching_entry_allows():
    wl = Whitelist(usb_switch=True, usb=[{"vendor": "ffff"}, {"vendor": "1050", "product": "0407"}])
    assert wl.allows(OTHER) and not wl.allows(STICK)


def test_lists_given_as_json_text_like_nova_conf():
    wl = Whitelist.from_config({
        "usb_white_list_switch": "on",
        "usb_passthrough_whitelist": '[{"product": "0x0003", "vendor": "0x136b", "bus": "2", "device": "2"}]',
        "pci_passthrough_whitelist": '[{"vendor_id": "8086", "product_id": "10c9"}]'})
    assert wl.allows(STICK) and wl.allows(NIC) and not wl.allows(GPU)


# -- PCI -----------------------------------------------------------------------------------------------
def test_pci_empty_whitelist_allows_nothing():
    assert not Whitelist(pci=[]).allows(NIC)
    assert not Whitelist.from_config({}).allows(GPU)


def test_pci_seed_entry():
    wl = Whitelist.from_config({"pci_passthrough_whitelist": [{"vendor_id": "8086", "product_id": "10c9"}]})
    assert wl.allows(NIC) and wl.allows(NIC_FN1)
    assert not wl.allows(GPU)


@pytest.mark.parametrize("entry, nic, fn1, gpu", [
    ({"vendor_id": "0x8086"}, True, True, False),
    ({"product_id": "10C9"}, True, True, False),
    ({"vendor_id": "8086", "product_id": "1eb8"}, False, False, False),
    ({"address": "0000:02:00.*"}, True, True, False),
    ({"address": "0000:02:00.1"}, False, True, False),
    ({"address": "02:00.0"}, True, False, False),        # no domain: any domain
    ({"address": "*:*:*.*"}, True, True, True),
    ({"address": "0000:01:00.0", "vendor_id": "10de"}, False, False, True),
    ({"address": "0000:1:0.0"}, False, False, True),      # short parts are padded
])
def test_pci_keys(entry, nic, fn1, gpu):
    wl = Whitelist(pci=[entry])
    assert (wl.allows(NIC), wl.allows(NIC_FN1), wl.allows(GPU)) == (nic, fn1, gpu)


def test_unknown_capability_is_never_allowed():
    assert not Whitelist().allows({"capability": "net", "name": "net_eth0"})


# -- strict validation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("config, fragment", [
    ({"usb_passthrough_whitelist": [{"vendor": "0x136b", "colour": "red"}]}, "colour"),
    ({"usb_passthrough_whitelist": [{"vendor": "0xzz"}]}, "vendor"),
    ({"usb_passthrough_whitelist": [{"product": "0x12345"}]}, "product"),
    ({"usb_passthrough_whitelist": [{"vendor": "0x136b"}, {"bus": "two"}]}, "usb_passthrough_whitelist[1]"),
    ({"usb_passthrough_whitelist": [{"device": 300}]}, "device"),
    ({"usb_passthrough_whitelist": [{"port_path": "1.4"}]}, "port_path"),
    ({"usb_passthrough_whitelist": [{}]}, "at least one"),
    ({"usb_passthrough_whitelist": ["0x136b"]}, "usb_passthrough_whitelist[0]"),
    ({"usb_passthrough_whitelist": "[{not json"}, "JSON"),
    ({"usb_passthrough_whitelist": 5}, "list"),
    ({"pci_passthrough_whitelist": [{"vendor": "8086"}]}, "vendor"),  # USB key in a PCI entry
    ({"pci_passthrough_whitelist": [{"vendor_id": "8086x"}]}, "vendor_id"),
    ({"pci_passthrough_whitelist": [{"address": "0000:02:00"}]}, "address"),
    ({"pci_passthrough_whitelist": [{"address": "0000:02:20.8"}]}, "address"),
    ({"usb_white_list_switch": "maybe"}, "usb_white_list_switch"),
    ({"usb_whitelist_switch": "on"}, "usb_whitelist_switch"),
])
def test_bad_entries_are_refused_naming_them(config, fragment):
    with pytest.raises(WhitelistError) as e:
        Whitelist.from_config(config)
    assert fragment in str(e.value)
    assert isinstance(e.value, ValueError)


def test_bool_is_not_a_number():
    with pytest.raises(ValueError):
        Whitelist(usb=[{"bus": True}])


# -- reporting ------------------------------------------------------------------------------------------
def test_to_dict_is_normalised_and_round_trips():
    wl = Whitelist.from_config({"usb_white_list_switch": True,
                                "usb_passthrough_whitelist": [{"vendor": "136B", "product": 3, "bus": 2}],
                                "pci_passthrough_whitelist": [{"vendor_id": "0x8086", "address": "02:00.*"}]})
    assert wl.to_dict() == {
        "usb_white_list_switch": "on",
        "usb_passthrough_whitelist": [{"vendor": "0x136b", "product": "0x0003", "bus": "2"}],
        "pci_passthrough_whitelist": [{"vendor_id": "8086", "address": "*:02:00.*"}],
    }
    assert Whitelist.from_config(wl.to_dict()) == wl
    assert Whitelist().to_dict() == {"usb_white_list_switch": "off", "usb_passthrough_whitelist": [],
                                     "pci_passthrough_whitelist": []}


def test_entries_are_copies():
    entry = {"vendor": "136b"}
    wl = Whitelist(usb_switch=True, usb=[entry])
    entry["vendor"] = "ffff"
    assert wl.allows(STICK)
