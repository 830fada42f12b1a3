"""A flavor's USB host devices (extra spec usb_devices): the spec's forms and each mistake, and
placement at start -- the host that has them free, claimed there, in VM.create; none free refused;
a device lost to another request sends the VM to the next host (issue: USB host devices, item 4)."""
from __future__ import annotations

import json

import pytest

from engine import flavor_specs as FS
from engine.commands import remove_vm, run_vm, stop_vm
from engine.dao import devices, host_devices
from engine.dao.models import Flavor
from engine.vocab import RUNNING_STATUSES
from tests.unit.engine.commands.refusals import refused

KEY = '[{"vendor_id": "0781", "product_id": "5567", "count": 1}]'


# ---- the spec ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, wants", [
    ('[{"id": 5}]', [FS.UsbRequest(id=5)]),
    (KEY, [FS.UsbRequest(vendor_id="0781", product_id="5567")]),
    ('[{"vendor_id": "0x0781", "product_id": "55AB", "count": 2}, {"id": 7}]',
     [FS.UsbRequest(vendor_id="0781", product_id="55ab", count=2), FS.UsbRequest(id=7)]),
    ([{"id": 5}], [FS.UsbRequest(id=5)]),
    ("[]", []),
])
def test_valid_usb_devices(value, wants):
    specs = {"usb_devices": value}
    assert FS.validate(specs) == []
    assert list(FS.usb_requests(specs)) == wants
    assert isinstance(FS.normalize(specs)[0]["usb_devices"], str)      # a list is stored as its JSON text


def one(value):
    found = FS.validate({"usb_devices": value})
    assert len(found) == 1, [r.message for r in found]
    assert found[0].code == "SPEC_VALUE_INVALID" and found[0].vars["key"] == "usb_devices"
    return found[0]


@pytest.mark.parametrize("value, path", [
    ("{not json", "usb_devices"),
    ('{"id": 5}', "usb_devices"),                                           # not a list
    ('[5]', "usb_devices[0]"),                                              # not an object
    ('[{"id": 5, "bus": 1}]', "usb_devices[0].bus"),                        # unknown field
    ('[{"id": 5, "vendor_id": "0781"}]', "usb_devices[0].vendor_id"),       # both forms at once
    ('[{"id": 0}]', "usb_devices[0].id"),
    ('[{"id": "5"}]', "usb_devices[0].id"),
    ('[{"id": true}]', "usb_devices[0].id"),
    ('[{"vendor_id": "781", "product_id": "5567"}]', "usb_devices[0].vendor_id"),
    ('[{"vendor_id": "0781"}]', "usb_devices[0].product_id"),               # missing
    ('[{"vendor_id": "0781", "product_id": "55g7"}]', "usb_devices[0].product_id"),
    ('[{"vendor_id": "0781", "product_id": "5567", "count": 0}]', "usb_devices[0].count"),
    ('[{"vendor_id": "0781", "product_id": "5567", "count": "1"}]', "usb_devices[0].count"),
    ('[{"vendor_id": "0781", "product_id": "5567", "count": 9}]', "usb_devices[0].count"),
    ('[{"id": 5}, {"id": 5}]', "usb_devices"),                              # one id twice
    ('[{"vendor_id": "0781", "product_id": "5567", "count": 8}, {"id": 5}]', "usb_devices"),  # over 8 in all
])
def test_usb_devices_mistake(value, path):
    assert one(value).vars["path"] == path


def test_usb_devices_need_a_usb_controller():
    found = FS.validate({"usb_devices": '[{"id": 5}]', "hw:usb_model": "none"})
    assert [(r.code, r.vars["other"]) for r in found] == [("SPEC_NEEDS_USB_CONTROLLER", "usb_devices")]


def test_every_mistake_is_reported():
    found = FS.validate({"usb_devices": '[{"id": 0}, {"vendor_id": "x"}, 3]'})
    assert [r.vars["path"] for r in found] == ["usb_devices[0].id", "usb_devices[1].vendor_id",
                                               "usb_devices[1].product_id", "usb_devices[2]"]


# ---- placement -----------------------------------------------------------------------------------

def usb(name, port, serial="", vendor="0781", product="5567", allowed=True):
    return {"name": name, "capability": "usb_device", "vendorId": vendor, "productId": product, "portPath": port,
            "serial": serial, "allowed": allowed}


def inventory(sessions, host, *items) -> list[int]:
    with sessions.begin() as s:
        return host_devices.sync(s, host.id, list(items)).added


@pytest.fixture
def flavor_vm(sessions, make_vm):
    def make(usb_devices: str):
        flavor = Flavor(name=f"f{len(usb_devices)}", memory_mb=256, vcpus=1, extra_specs={"usb_devices": usb_devices})
        with sessions.begin() as s:
            s.add(flavor)
        return make_vm(flavor=flavor.id)
    return make


@pytest.fixture
def host2(make_host, hosts):
    fake = hosts["host2"]
    return make_host("host2", capabilities=dict(fake.capabilities))


def held(sessions, vm):
    with sessions() as s:
        return [(d.id, d.host_id, d.status) for d in host_devices.list_for_vm(s, vm.id)]


def test_the_host_that_has_the_device_free_is_chosen_and_the_vm_starts_with_it(sessions, hosts, host, host2,
                                                                                 flavor_vm, db):
    inventory(sessions, host, usb("usb_1_2", "1-2", vendor="046d"))          # host1: another product only
    (key,) = inventory(sessions, host2, usb("usb_1_3", "1-3", serial="K"))
    vm = flavor_vm(KEY)
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    assert db.vm(vm.id).run_on_host == host2.id
    assert held(sessions, vm) == [(key, host2.id, "allocated")]
    (create,) = hosts["host2"].sent("VM.create")
    (sent,) = [d for d in create["params"]["devices"] if d["type"] == "hostdev"]
    assert (sent["source"], sent["startupPolicy"]) == ({"portPath": "1-3"}, "optional")
    with sessions() as s:
        (row,) = devices.list_for_vm(s, vm.id, type="hostdev")
        assert (row.host_device_id, row.is_plugged, row.custom_properties) == (key, True, {"origin": "flavor"})


def test_a_device_by_id_pins_the_vm_to_its_host_and_stays_until_the_vm_is_removed(sessions, hosts, host, host2,
                                                                                   flavor_vm, db):
    inventory(sessions, host, usb("usb_1_2", "1-2"))
    (key,) = inventory(sessions, host2, usb("usb_1_2", "1-2"))
    vm = flavor_vm(json.dumps([{"id": key}]))
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    assert db.vm(vm.id).run_on_host == host2.id
    stop_vm.execute(sessions, hosts, stop_vm.Params(vm.id))    # the devices stay the VM's (Nova's PCI)
    assert held(sessions, vm) == [(key, host2.id, "allocated")]
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    assert held(sessions, vm) == [(key, host2.id, "allocated")]
    with sessions() as s:
        assert len(devices.list_for_vm(s, vm.id, type="hostdev")) == 1       # not placed again
    stop_vm.execute(sessions, hosts, stop_vm.Params(vm.id))
    remove_vm.execute(sessions, hosts, remove_vm.Params(vm.id))
    with sessions() as s:
        assert host_devices.get(s, key).status == "available"


def test_none_free_is_refused_naming_what_is_missing(sessions, hosts, fake, host, host2, flavor_vm, db, make_vm):
    inventory(sessions, host, usb("usb_1_2", "1-2", allowed=False))          # not on the whitelist
    (taken,) = inventory(sessions, host2, usb("usb_1_3", "1-3"))
    with sessions.begin() as s:
        host_devices.claim(s, taken, make_vm().id)
    vm = flavor_vm('[{"vendor_id": "0781", "product_id": "5567", "count": 1}, {"id": 999}]')
    err = refused(sessions, db, fake, "VM_START", lambda: run_vm.execute(sessions, hosts, run_vm.Params(vm.id)),
                  "NO_HOST_WITH_USB_DEVICES")
    assert err.reasons[0].vars["missing"] == ["1 USB device 0781:5567 (0 free)", "USB device 999 (0 free)"]
    assert hosts["host2"].sent("VM.create") == []


def test_requests_met_on_no_single_host_are_refused(sessions, hosts, fake, host, host2, flavor_vm, db):
    (a,) = inventory(sessions, host, usb("usb_1_2", "1-2"))
    (b,) = inventory(sessions, host2, usb("usb_1_2", "1-2", vendor="046d", product="c52b"))
    vm = flavor_vm(json.dumps([{"id": a}, {"id": b}]))
    err = refused(sessions, db, fake, "VM_START", lambda: run_vm.execute(sessions, hosts, run_vm.Params(vm.id)),
                  "NO_HOST_WITH_USB_DEVICES")
    assert err.reasons[0].vars["missing"] == [] and "on one host" in err.reasons[0].message


def test_a_device_lost_to_another_request_sends_the_vm_to_the_next_host(sessions, hosts, host, host2, flavor_vm,
                                                                         make_vm, db, monkeypatch):
    (first,) = inventory(sessions, host, usb("usb_1_2", "1-2"))
    (second,) = inventory(sessions, host2, usb("usb_1_2", "1-2"))
    other = make_vm()
    real = host_devices.free_on_host

    def raced(s, host_id, wants):      # another request claims the device right after it was read
        rows = real(s, host_id, wants)
        if host_id == host.id:
            assert host_devices.claim(s, first, other.id)
        return rows

    monkeypatch.setattr(host_devices, "free_on_host", raced)
    vm = flavor_vm(KEY)
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    assert db.vm(vm.id).run_on_host == host2.id
    assert held(sessions, vm) == [(second, host2.id, "allocated")]
    assert held(sessions, other) == [(first, host.id, "claimed")]


def test_placement_query_counts_free_devices_per_host_in_one_query(sessions, host, host2, make_vm):
    inventory(sessions, host, usb("a", "1-1"), usb("b", "1-2", allowed=False))
    inventory(sessions, host2, usb("a", "1-1"), usb("b", "1-2"), usb("c", "1-3", vendor="046d"))
    two = [FS.UsbRequest(vendor_id="0781", product_id="5567", count=2)]
    with sessions() as s:
        found = host_devices.hosts_with_free(s, two, cluster_id=host.cluster_id, host_status="up",
                                             running_statuses=RUNNING_STATUSES)
        assert [(h.name, load) for h, load in found] == [("host2", 0)]
        assert host_devices.free_counts(s, two, [host.id, host2.id]) == [2]
    make_vm(status="up", host=host2)
    one = [FS.UsbRequest(vendor_id="0781", product_id="5567")]
    with sessions() as s:
        found = host_devices.hosts_with_free(s, one, cluster_id=host.cluster_id, host_status="up",
                                             running_statuses=RUNNING_STATUSES)
        assert [(h.name, load) for h, load in found] == [("host1", 0), ("host2", 1)]    # least loaded first
