"""engine.flavor_specs: every extra-spec rule, one reason per test, and the device rows a flavor gives;
the canDo of the flavor commands and of add_vm from a flavor."""
from __future__ import annotations

import json

import pytest

from engine import flavor_specs as FS
from engine.commands import add_flavor, add_vm
from engine.commands import flavor_common as F
from engine.commands import set_flavor_specs as S
from engine.dao.models import Cluster, Flavor
from tests.unit.engine.fakehost import definition_validator

SPICE = {"bus": "usb", "type": "spicevmc"}
TCP = {"bus": "usb", "type": "tcp", "host": "usbhub.example", "port": 4000}


def codes(reasons):
    return [r.code for r in reasons]


def one(specs):
    """The single reason `specs` get (the test fails if there are more or none)."""
    reasons = FS.validate(specs)
    assert len(reasons) == 1, reasons
    return reasons[0]


# ---- what passes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("specs", [
    None,
    {},
    {"usb_redirection_devices": [SPICE, TCP]},
    {"usb_redirection_devices": json.dumps([SPICE])},
    {"usb_redirection_devices": "[]"},
    {"usb_redirection_devices": [{"type": "spicevmc"}]},                     # bus defaults to usb
    {"usb_redirection_devices": [{**TCP, "mode": "bind"}]},
    {"hw:usb_model": "qemu-xhci", "hw:redirected_usb_ports": "4"},
    {"hw:usb_model": "nec-xhci"},
    {"hw:usb_model": "none"},
    {"hw:redirected_usb_ports": 15},
    {"hw:redirected_usb_ports": "0", "hw:usb_model": "none"},
    {"usb_devices": '[{"id": 5}]', "pci_passthrough:alias": "nic1:2"},        # reserved, kept
    {"quota:cpu_shares": "1024", "aggregate_instance_extra_specs:ssd": "true", "trait:HW_GPU": "required"},
])
def test_valid_specs(specs):
    assert FS.validate(specs) == []


def test_stored_form_is_strings():
    stored, reasons = FS.normalize({"usb_redirection_devices": [SPICE], "hw:redirected_usb_ports": 2,
                                    "quota:vif_limit": 1.5})
    assert codes(reasons) == ["SPEC_CONFLICT"]
    stored, reasons = FS.normalize({"usb_redirection_devices": [SPICE], "quota:cpu_period": 20000})
    assert reasons == []
    assert stored == {"usb_redirection_devices": json.dumps([SPICE]), "quota:cpu_period": "20000"}
    assert FS.validate(stored) == []    # what is stored validates again


def test_unknown_keys_outside_our_namespaces_are_kept_as_given():
    stored, reasons = FS.normalize({"vendor:anything goes": "x y z"})
    assert reasons == [] and stored == {"vendor:anything goes": "x y z"}


# ---- one reason each -----------------------------------------------------------------------------

def test_key_syntax():
    reason = one({"bad/key": "1"})
    assert reason.code == "SPEC_KEY_INVALID" and reason.vars["key"] == "bad/key"


def test_key_too_long():
    assert one({"k" * 256: "1"}).code == "SPEC_KEY_INVALID"


@pytest.mark.parametrize("key", ["hw:cpu_policy", "hw:usb_modle", "plugboard:x", "usb_redirection_device",
                                 "pci_passthrough:count"])
def test_unknown_key_in_our_namespaces(key):
    reason = one({key: "1"})
    assert reason.code == "SPEC_KEY_UNKNOWN" and reason.vars["key"] == key


@pytest.mark.parametrize("value", [True, None, {"a": 1}, ["x"]])
def test_value_not_a_string(value):
    reason = one({"hw:usb_model": value})
    assert reason.code == "SPEC_VALUE_INVALID" and reason.vars["key"] == "hw:usb_model"


def test_value_too_long():
    reason = one({"quota:x": "v" * (FS.VALUE_MAX + 1)})
    assert reason.code == "SPEC_VALUE_INVALID" and reason.vars["key"] == "quota:x"


def test_usb_model_unknown():
    reason = one({"hw:usb_model": "ehci"})
    assert (reason.code, reason.vars["key"], reason.vars["value"]) == ("SPEC_VALUE_INVALID", "hw:usb_model", "ehci")


@pytest.mark.parametrize("value", ["16", "-1", "two", "", 16, "1.5"])
def test_redirected_usb_ports_out_of_range(value):
    reason = one({"hw:redirected_usb_ports": value})
    assert (reason.code, reason.vars["key"]) == ("SPEC_VALUE_INVALID", "hw:redirected_usb_ports")


def test_redirection_devices_not_json():
    reason = one({"usb_redirection_devices": "[{bus: usb}"})
    assert (reason.code, reason.vars["key"]) == ("SPEC_VALUE_INVALID", "usb_redirection_devices")


def test_redirection_devices_not_a_list():
    reason = one({"usb_redirection_devices": json.dumps(SPICE)})
    assert (reason.code, reason.vars["path"]) == ("SPEC_VALUE_INVALID", "usb_redirection_devices")


def test_too_many_redirection_devices():
    reason = one({"usb_redirection_devices": [SPICE] * (FS.MAX_REDIRECTION_DEVICES + 1)})
    assert reason.code == "SPEC_VALUE_INVALID"


def test_redirection_entry_not_an_object():
    reason = one({"usb_redirection_devices": [SPICE, "spicevmc"]})
    assert reason.vars["path"] == "usb_redirection_devices[1]"


def test_redirection_entry_unknown_field():
    reason = one({"usb_redirection_devices": [{**SPICE, "name": "x"}]})
    assert reason.vars["path"] == "usb_redirection_devices[0].name"


def test_redirection_bus_not_usb():
    reason = one({"usb_redirection_devices": [{**SPICE, "bus": "pci"}]})
    assert (reason.vars["path"], reason.vars["value"]) == ("usb_redirection_devices[0].bus", "pci")


@pytest.mark.parametrize("entry", [{"bus": "usb"}, {"bus": "usb", "type": "unix"}])
def test_redirection_type_missing_or_unknown(entry):
    assert one({"usb_redirection_devices": [entry]}).vars["path"] == "usb_redirection_devices[0].type"


def test_spicevmc_takes_no_host():
    reason = one({"usb_redirection_devices": [{**SPICE, "host": "h"}]})
    assert reason.vars["path"] == "usb_redirection_devices[0].host"


@pytest.mark.parametrize("host", [None, "", "bad host", "x" * 254, 7])
def test_tcp_host_invalid(host):
    entry = {**TCP, "host": host}
    assert one({"usb_redirection_devices": [entry]}).vars["path"] == "usb_redirection_devices[0].host"


@pytest.mark.parametrize("port", [None, 0, 65536, "4000", True, 1.5])
def test_tcp_port_invalid(port):
    entry = {**TCP, "port": port}
    assert one({"usb_redirection_devices": [entry]}).vars["path"] == "usb_redirection_devices[0].port"


def test_tcp_mode_invalid():
    entry = {**TCP, "mode": "listen"}
    assert one({"usb_redirection_devices": [entry]}).vars["path"] == "usb_redirection_devices[0].mode"


def test_both_ways_of_asking_for_redirection_conflict():
    reason = one({"usb_redirection_devices": [SPICE], "hw:redirected_usb_ports": "2"})
    assert reason.code == "SPEC_CONFLICT"
    assert {reason.vars["key"], reason.vars["other"]} == {"usb_redirection_devices", "hw:redirected_usb_ports"}


@pytest.mark.parametrize("specs", [{"hw:usb_model": "none", "hw:redirected_usb_ports": "1"},
                                   {"hw:usb_model": "none", "usb_redirection_devices": [TCP]}])
def test_redirection_needs_a_usb_controller(specs):
    reason = one(specs)
    assert (reason.code, reason.vars["key"]) == ("SPEC_NEEDS_USB_CONTROLLER", "hw:usb_model")


def test_every_problem_is_reported():
    reasons = FS.validate({"hw:usb_model": "ehci", "hw:nope": "1", "bad/key": "1",
                           "usb_redirection_devices": [{"type": "tcp", "port": 0}]})
    assert sorted(codes(reasons)) == ["SPEC_KEY_INVALID", "SPEC_KEY_UNKNOWN", "SPEC_VALUE_INVALID",
                                      "SPEC_VALUE_INVALID", "SPEC_VALUE_INVALID"]


def test_specs_not_an_object():
    assert codes(FS.validate(["hw:usb_model"])) == ["SPEC_VALUE_INVALID"]


# ---- devices_for ---------------------------------------------------------------------------------

def test_devices_for_redirection_list_and_controller():
    rows = FS.devices_for({"hw:usb_model": "qemu-xhci", "usb_redirection_devices": json.dumps([SPICE, TCP])})
    assert rows == [
        {"type": "controller", "device": "usb", "spec_params": {"model": "qemu-xhci", "index": 0}},
        {"type": "redirdev", "device": "spicevmc", "spec_params": {}},
        {"type": "redirdev", "device": "tcp", "spec_params": {"host": "usbhub.example", "port": 4000}},
    ]


def test_devices_for_redirected_usb_ports():
    rows = FS.devices_for({"hw:redirected_usb_ports": "3"})
    assert rows == [{"type": "redirdev", "device": "spicevmc", "spec_params": {}}] * 3


def test_devices_for_gives_an_xhci_controller_a_port_per_redirection_device():
    rows = FS.devices_for({"hw:usb_model": "qemu-xhci", "hw:redirected_usb_ports": "6"})
    assert rows[0]["spec_params"] == {"model": "qemu-xhci", "index": 0, "ports": 6}
    rows = FS.devices_for({"hw:usb_model": "qemu-xhci", "hw:redirected_usb_ports": "4"})
    assert rows[0]["spec_params"] == {"model": "qemu-xhci", "index": 0}


def test_devices_for_tcp_mode_and_no_usb():
    assert FS.devices_for({"usb_redirection_devices": [{**TCP, "mode": "bind"}]})[0]["spec_params"] == \
        {"host": "usbhub.example", "port": 4000, "mode": "bind"}
    assert FS.devices_for({"hw:usb_model": "none"}) == \
        [{"type": "controller", "device": "usb", "spec_params": {"model": "none", "index": 0}}]
    assert FS.devices_for({"quota:cpu_shares": "1", "usb_devices": "[]"}) == []


def test_devices_for_refuses_invalid_specs():
    with pytest.raises(ValueError):
        FS.devices_for({"hw:usb_model": "ehci"})


def test_needs_spice():
    assert FS.needs_spice({"hw:redirected_usb_ports": "1"})
    assert FS.needs_spice({"usb_redirection_devices": [TCP, SPICE]})
    assert not FS.needs_spice({"usb_redirection_devices": [TCP]})
    assert not FS.needs_spice({"hw:redirected_usb_ports": "0"})


def test_device_rows_match_the_agent_contract():
    """Each row, as run_vm sends it (type, device, alias + spec_params), is valid for the agent."""
    rows = FS.devices_for({"hw:usb_model": "nec-xhci",
                           "usb_redirection_devices": [SPICE] * 5 + [{**TCP, "mode": "connect"}]})
    for row in rows:
        payload = {"type": row["type"], "device": row["device"], "alias": "ua-x", **row["spec_params"]}
        errors = list(definition_validator(row["type"]).iter_errors(payload))
        assert errors == [], (row, [e.message for e in errors])


# ---- the flavor commands' canDo (pure) -----------------------------------------------------------

def _flavor(**kw):
    return Flavor(**{"id": "f1", "name": "desk", "memory_mb": 1024, "vcpus": 2, "disk_gb": 0,
                     "extra_specs": {}, **kw})


def addflavor(name_in_use=False, id_in_use=False, **kw):
    return add_flavor.validate(add_flavor.Params(**{"name": "m1", "memory_mb": 512, "vcpus": 1, **kw}),
                               name_in_use=name_in_use, id_in_use=id_in_use)


def test_add_flavor_passes():
    assert addflavor(flavor_id="m1.small", disk_gb=10, extra_specs={"hw:redirected_usb_ports": "1"}) == []


@pytest.mark.parametrize("name", ["", " padded", "x" * 65, "tab\there"])
def test_add_flavor_name_invalid(name):
    assert codes(addflavor(name=name)) == ["NAME_INVALID"]


def test_add_flavor_name_in_use():
    assert codes(addflavor(name_in_use=True)) == ["NAME_IN_USE"]


def test_add_flavor_id_in_use():
    assert codes(addflavor(flavor_id="m1", id_in_use=True)) == ["FLAVOR_ID_IN_USE"]


@pytest.mark.parametrize("kw,field", [({"flavor_id": "a b"}, "id"), ({"memory_mb": 8}, "memory_mb"),
                                      ({"vcpus": 0}, "vcpus"), ({"disk_gb": -1}, "disk_gb"),
                                      ({"memory_mb": True}, "memory_mb")])
def test_add_flavor_field_invalid(kw, field):
    reasons = addflavor(**kw)
    assert codes(reasons) == ["FIELD_INVALID"] and reasons[0].vars["field"] == field


def test_add_flavor_specs_invalid():
    assert codes(addflavor(extra_specs={"hw:usb_model": "ehci"})) == ["SPEC_VALUE_INVALID"]


def test_flavor_refusal_is_409_only_for_the_state():
    assert F.refusal(addflavor(name_in_use=True), "no").status == 409
    assert F.refusal(addflavor(name_in_use=True, vcpus=0), "no").status == 400


def test_set_flavor_specs_validates_the_result():
    flavor = _flavor(extra_specs={"hw:redirected_usb_ports": "2"})
    assert codes(S.validate(S.Params("f1", specs={"hw:usb_model": "none"}), flavor=flavor)) == \
        ["SPEC_NEEDS_USB_CONTROLLER"]
    assert S.validate(S.Params("f1", specs={"hw:usb_model": "none"}, replace=True), flavor=flavor) == []
    assert S.validate(S.Params("f1", specs={"hw:usb_model": "none"}, unset=("hw:redirected_usb_ports",)),
                      flavor=flavor) == []
    assert codes(S.validate(S.Params("f1", specs=["x"]), flavor=flavor)) == ["SPEC_VALUE_INVALID"]


def addvm(flavor=None, **kw):
    cluster = Cluster(name="Default", compat_version="4.7")
    return add_vm.validate(add_vm.Params(**{"name": "vm9", **kw}), cluster=cluster, name_in_use=False, flavor=flavor)


def test_add_vm_from_flavor_passes():
    assert addvm(flavor_id="f1", flavor=_flavor(extra_specs={"hw:redirected_usb_ports": "1"})) == []
    assert addvm(flavor_id="f1", graphics="spice", flavor=_flavor(extra_specs={"hw:redirected_usb_ports": "1"})) == []
    assert addvm(flavor_id="f1", graphics="vnc", flavor=_flavor(extra_specs={"usb_redirection_devices": [TCP]})) == []


def test_add_vm_flavor_not_found():
    assert codes(addvm(flavor_id="nope")) == ["FLAVOR_NOT_FOUND"]


def test_add_vm_spice_required():
    reasons = addvm(flavor_id="f1", graphics="vnc", flavor=_flavor(extra_specs={"hw:redirected_usb_ports": "1"}))
    assert codes(reasons) == ["SPICE_REQUIRED"] and reasons[0].vars == {"vm": "vm9", "graphics": "vnc"}


@pytest.mark.parametrize("machine,ports", [("pc", "3"), ("q35", "5")])
def test_add_vm_flavor_redirection_outnumbers_the_default_controllers_ports(machine, ports):
    reasons = addvm(flavor_id="f1", machine=machine, flavor=_flavor(extra_specs={"hw:redirected_usb_ports": ports}))
    assert codes(reasons) == ["NO_FREE_USB_PORT"]
    assert reasons[0].vars == {"flavor": "desk", "devices": int(ports), "machine": machine}


def test_add_vm_flavor_redirection_fits_an_xhci_controller():
    flavor = _flavor(extra_specs={"hw:usb_model": "nec-xhci", "hw:redirected_usb_ports": "15"})
    assert addvm(flavor_id="f1", flavor=flavor) == []


def test_add_vm_flavor_specs_no_longer_valid():
    assert codes(addvm(flavor_id="f1", flavor=_flavor(extra_specs={"hw:usb_model": "ehci"}))) == ["SPEC_VALUE_INVALID"]


def test_add_vm_size_comes_from_the_flavor_unless_given():
    flavor = _flavor(extra_specs={"hw:redirected_usb_ports": "1"})
    assert add_vm.settings(add_vm.Params("v", flavor_id="f1"), flavor) == add_vm.Settings(1024, 2, "spice")
    assert add_vm.settings(add_vm.Params("v", flavor_id="f1", vcpus=4, graphics="spice"), flavor) == \
        add_vm.Settings(1024, 4, "spice")
    assert add_vm.settings(add_vm.Params("v"), None) == add_vm.Settings(256, 1, "none")


@pytest.mark.parametrize("meta,field", [({"k": 1}, "meta.k"), ({"": "v"}, "meta"), ({"k": "v" * 256}, "meta.k"),
                                        ("k=v", "meta")])
def test_add_vm_meta_invalid(meta, field):
    reasons = addvm(meta=meta)
    assert codes(reasons) == ["FIELD_INVALID"] and reasons[0].vars["field"] == field
