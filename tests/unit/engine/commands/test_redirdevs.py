"""USB redirection devices (spicevmc, tcp) end to end over the database and a FakeHost: add, activate,
deactivate, remove, the SPICE and free-port rules, and what run_vm sends for them."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from engine.api.views import redirdev_view
from engine.commands import add_controller, add_redirdev, plug_unplug_redirdev, remove_redirdev, run_vm, stop_vm
from engine.dao import devices
from engine.errors import Conflict, HostCallFailed, NotFound
from tests.unit.engine.commands.refusals import refused


def add(sessions, hosts, vm, kind="spicevmc", **kw):
    return add_redirdev.execute(sessions, hosts, add_redirdev.Params(vm.id, kind, **kw))


def plug(sessions, hosts, vm, dev_id, on=True):
    return plug_unplug_redirdev.execute(sessions, hosts, plug_unplug_redirdev.Params(vm.id, dev_id, on))


def remove(sessions, hosts, vm, dev_id):
    return remove_redirdev.execute(sessions, hosts, remove_redirdev.Params(vm.id, dev_id))


def view(sessions, dev_id) -> dict[str, Any]:
    with sessions.begin() as s:
        dev = devices.get(s, dev_id)
        assert dev is not None and dev.type == "redirdev"
        return redirdev_view(dev)


def redirdevs(sessions, vm) -> list[dict[str, Any]]:
    with sessions.begin() as s:
        return [redirdev_view(d) for d in devices.list_for_vm(s, vm.id, type="redirdev")]


@pytest.fixture
def spice_down(make_vm):
    return make_vm(status="down", graphics="spice")


@pytest.fixture
def spice_up(make_vm, host, fake):
    vm = make_vm(status="up", host=host, graphics="spice")
    fake.add_domain(vm.id, vm.name)
    fake.calls.clear()
    return vm


# ---- add ------------------------------------------------------------------------------------------

def test_add_spicevmc_to_down_vm_is_plugged_and_sent_at_start(sessions, hosts, fake, host, spice_down, db):
    out = add(sessions, hosts, spice_down)
    assert out.created and not out.pending
    got = view(sessions, out.id)
    assert (got["type"], got["bus"], got["plugged"], got["plug_state"], got["address"]) == \
        ("spicevmc", "usb", True, "stable", None)
    assert fake.calls == []
    assert db.codes(spice_down.id) == ["REDIRDEV_ADDED"]

    run_vm.execute(sessions, hosts, run_vm.Params(spice_down.id, host.id))
    [create] = fake.sent("VM.create")
    assert create["params"]["graphics"] == "spice"
    assert create["params"]["devices"] == [{"type": "redirdev", "device": "spicevmc", "alias": f"ua-{out.id}"}]
    live = fake.domain(spice_down.id).find(alias=f"ua-{out.id}")
    assert view(sessions, out.id)["address"] == live["address"]



def test_restart_sends_the_kept_usb_address(sessions, hosts, fake, host, spice_up, db):
    out = add(sessions, hosts, spice_up)
    address = view(sessions, out.id)["address"]
    stop_vm.execute(sessions, hosts, stop_vm.Params(spice_up.id))
    got = view(sessions, out.id)
    assert (got["plugged"], got["address"]) == (True, address)
    run_vm.execute(sessions, hosts, run_vm.Params(spice_up.id, host.id))
    assert fake.sent("VM.create")[-1]["params"]["devices"] == [
        {"type": "redirdev", "device": "spicevmc", "alias": f"ua-{out.id}", "address": address}]
    assert db.vm(spice_up.id).status == "up"

def test_add_inactive_is_not_sent_at_start(sessions, hosts, fake, host, spice_down):
    out = add(sessions, hosts, spice_down, active=False)
    assert view(sessions, out.id)["plugged"] is False
    run_vm.execute(sessions, hosts, run_vm.Params(spice_down.id, host.id))
    assert fake.sent("VM.create")[0]["params"]["devices"] == []


def test_add_spicevmc_to_running_vm_hotplugs_it(sessions, hosts, fake, spice_up, db):
    out = add(sessions, hosts, spice_up)
    assert out.created and not out.pending
    [sent] = fake.sent("VM.hotplugRedirdev")
    assert sent == {"vmId": spice_up.id, "redirdev": {"type": "redirdev", "device": "spicevmc",
                                                      "alias": f"ua-{out.id}"}}
    got = view(sessions, out.id)
    live = fake.domain(spice_up.id).find(alias=f"ua-{out.id}")
    assert (got["plugged"], got["plug_state"]) == (True, "stable")
    assert got["address"] == live["address"] and got["address"]["type"] == "usb"
    assert db.codes(spice_up.id) == ["REDIRDEV_ADDED", "REDIRDEV_PLUGGED"]


def test_add_whose_hotplug_fails_is_kept_deactivated(sessions, hosts, fake, spice_up, db):
    fake.fail("VM.hotplugRedirdev", "redirdevPlugFailed")
    with pytest.raises(HostCallFailed):
        add(sessions, hosts, spice_up)
    [got] = redirdevs(sessions, spice_up)
    assert (got["plugged"], got["plug_state"], got["address"]) == (False, "stable", None)
    assert got["last_error"]["verb"] == "VM.hotplugRedirdev"
    assert db.codes(spice_up.id) == ["REDIRDEV_ADDED", "REDIRDEV_PLUG_FAILED"]


def test_add_tcp_with_host_and_port(sessions, hosts, fake, host, make_vm):
    vm = make_vm(status="down", graphics="vnc")             # tcp needs no SPICE
    out = add(sessions, hosts, vm, "tcp", host="usbsrv.example", port=4000, mode="bind")
    got = view(sessions, out.id)
    assert (got["type"], got["host"], got["port"], got["mode"], got["plugged"]) == \
        ("tcp", "usbsrv.example", 4000, "bind", True)
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id, host.id))
    assert fake.sent("VM.create")[0]["params"]["devices"] == [
        {"type": "redirdev", "device": "tcp", "alias": f"ua-{out.id}", "host": "usbsrv.example", "port": 4000,
         "mode": "bind"}]


def test_add_tcp_to_running_vm_sends_host_and_port(sessions, hosts, fake, up_vm):
    out = add(sessions, hosts, up_vm, "tcp", host="10.0.0.5", port=4000)
    [sent] = fake.sent("VM.hotplugRedirdev")
    assert sent["redirdev"] == {"type": "redirdev", "device": "tcp", "alias": f"ua-{out.id}", "host": "10.0.0.5",
                                "port": 4000}
    assert view(sessions, out.id)["plugged"] is True


@pytest.mark.parametrize("fields, missing", [({}, ["host", "port"]), ({"host": "10.0.0.5"}, ["port"]),
                                             ({"port": 4000}, ["host"]),
                                             ({"host": "10.0.0.5", "port": 0}, ["port"]),
                                             ({"host": "a b", "port": 4000}, ["host"]),
                                             ({"host": "usbsrv\n", "port": 4000}, ["host"]),
                                             ({"host": "h'/><evil/>", "port": 4000}, ["host"])])
def test_add_tcp_without_a_valid_host_and_port_is_refused(sessions, hosts, fake, down_vm, db, fields, missing):
    err = refused(sessions, db, fake, "REDIRDEV_ADD", lambda: add(sessions, hosts, down_vm, "tcp", **fields),
                  *["FIELD_INVALID"] * len(missing))
    assert [r.vars["field"] for r in err.reasons] == missing


def test_host_and_port_are_for_tcp_only(sessions, hosts, fake, spice_down, db):
    refused(sessions, db, fake, "REDIRDEV_ADD",
            lambda: add(sessions, hosts, spice_down, host="10.0.0.5", port=4000), "FIELD_INVALID")


@pytest.mark.parametrize("kind, bus, code", [("usbredir", "usb", "REDIRDEV_TYPE_UNSUPPORTED"),
                                             ("spicevmc", "pci", "FIELD_INVALID")])
def test_unknown_type_or_bus_is_refused(sessions, hosts, fake, spice_down, db, kind, bus, code):
    refused(sessions, db, fake, "REDIRDEV_ADD", lambda: add(sessions, hosts, spice_down, kind, bus=bus), code)


@pytest.mark.parametrize("graphics", ["vnc", "none"])
def test_spicevmc_needs_spice_graphics(sessions, hosts, fake, make_vm, db, graphics):
    vm = make_vm(status="down", graphics=graphics)
    refused(sessions, db, fake, "REDIRDEV_ADD", lambda: add(sessions, hosts, vm), "SPICE_REQUIRED")


def test_spicevmc_on_running_vnc_vm_is_refused_without_a_host_call(sessions, hosts, fake, make_vm, host, db):
    vm = make_vm(status="up", host=host, graphics="vnc")
    fake.add_domain(vm.id, vm.name)
    fake.calls.clear()
    refused(sessions, db, fake, "REDIRDEV_ADD", lambda: add(sessions, hosts, vm), "SPICE_REQUIRED")
    assert fake.calls == []


def test_add_to_a_paused_vm_is_refused(sessions, hosts, fake, make_vm, host, db):
    vm = make_vm(status="paused", host=host, graphics="spice")
    refused(sessions, db, fake, "REDIRDEV_ADD", lambda: add(sessions, hosts, vm), "VM_STATUS_ILLEGAL")
    add(sessions, hosts, vm, active=False)          # an inactive one is only a row


# ---- free USB ports -------------------------------------------------------------------------------

def test_no_free_usb_port_on_the_pc_default_controller(sessions, hosts, fake, spice_down, db):
    """pc's default piix3-uhci has two ports: a third active device is refused until a controller with
    more ports is added."""
    add(sessions, hosts, spice_down)
    add(sessions, hosts, spice_down)
    refused(sessions, db, fake, "REDIRDEV_ADD", lambda: add(sessions, hosts, spice_down), "NO_FREE_USB_PORT")
    spare = add(sessions, hosts, spice_down, active=False)   # an inactive one takes no port
    refused(sessions, db, fake, "REDIRDEV_PLUG", lambda: plug(sessions, hosts, spice_down, spare.id),
            "NO_FREE_USB_PORT")

    add_controller.execute(sessions, hosts, add_controller.Params(spice_down.id, "ehci"))    # 6 ports
    add(sessions, hosts, spice_down)
    plug(sessions, hosts, spice_down, spare.id)
    add(sessions, hosts, spice_down)
    add(sessions, hosts, spice_down)
    assert sum(v["plugged"] for v in redirdevs(sessions, spice_down)) == 6
    refused(sessions, db, fake, "REDIRDEV_ADD", lambda: add(sessions, hosts, spice_down), "NO_FREE_USB_PORT")


def test_q35_default_controller_has_four_ports(sessions, hosts, fake, make_vm, db):
    vm = make_vm(status="down", graphics="spice", machine="q35")
    for _ in range(4):
        add(sessions, hosts, vm)
    refused(sessions, db, fake, "REDIRDEV_ADD", lambda: add(sessions, hosts, vm), "NO_FREE_USB_PORT")


def test_xhci_ports_override_counts(sessions, hosts, fake, spice_down, db):
    add_controller.execute(sessions, hosts, add_controller.Params(spice_down.id, "xhci", ports=3))  # index 0
    for _ in range(3):
        add(sessions, hosts, spice_down)
    refused(sessions, db, fake, "REDIRDEV_ADD", lambda: add(sessions, hosts, spice_down), "NO_FREE_USB_PORT")



@pytest.mark.parametrize("index", [0, 3])
def test_no_usb_port_when_usb_is_disabled(sessions, hosts, fake, spice_down, db, index):
    """A controller of model none means no USB at all, at whatever index it was given: libvirt adds no
    default controller then and refuses a redirected device."""
    add_controller.execute(sessions, hosts, add_controller.Params(spice_down.id, "none", index=index))
    refused(sessions, db, fake, "REDIRDEV_ADD", lambda: add(sessions, hosts, spice_down), "NO_FREE_USB_PORT")

def test_no_free_usb_port_on_running_vm_is_refused_without_a_host_call(sessions, hosts, fake, spice_up, db):
    add(sessions, hosts, spice_up)
    add(sessions, hosts, spice_up)
    assert len(fake.sent("VM.hotplugRedirdev")) == 2
    refused(sessions, db, fake, "REDIRDEV_ADD", lambda: add(sessions, hosts, spice_up), "NO_FREE_USB_PORT")
    assert len(fake.sent("VM.hotplugRedirdev")) == 2
    assert len(fake.domain(spice_up.id).devices) == 2


def test_a_deactivated_device_frees_its_port(sessions, hosts, fake, spice_up):
    first = add(sessions, hosts, spice_up)
    add(sessions, hosts, spice_up)
    plug(sessions, hosts, spice_up, first.id, on=False)
    third = add(sessions, hosts, spice_up)
    assert view(sessions, third.id)["plugged"] is True
    assert sum(v["plugged"] for v in redirdevs(sessions, spice_up)) == 2


# ---- activate / deactivate ------------------------------------------------------------------------

def test_deactivate_and_activate_on_running_vm(sessions, hosts, fake, spice_up, db):
    out = add(sessions, hosts, spice_up)
    alias = f"ua-{out.id}"
    assert not plug(sessions, hosts, spice_up, out.id, on=False).pending
    assert fake.sent("VM.hotunplugRedirdev") == [{"vmId": spice_up.id, "redirdev": {"alias": alias}}]
    got = view(sessions, out.id)
    assert (got["plugged"], got["plug_state"], got["address"]) == (False, "stable", None)
    assert fake.domain(spice_up.id).find(alias=alias) is None

    plug(sessions, hosts, spice_up, out.id)
    assert len(fake.sent("VM.hotplugRedirdev")) == 2
    got = view(sessions, out.id)
    assert (got["plugged"], got["plug_state"]) == (True, "stable")
    assert got["address"] == fake.domain(spice_up.id).find(alias=alias)["address"]
    assert db.codes(spice_up.id) == ["REDIRDEV_ADDED", "REDIRDEV_PLUGGED", "REDIRDEV_UNPLUGGED", "REDIRDEV_PLUGGED"]


def test_activate_and_deactivate_on_down_vm_touch_no_host(sessions, hosts, fake, spice_down, db):
    out = add(sessions, hosts, spice_down, active=False)
    plug(sessions, hosts, spice_down, out.id)
    assert view(sessions, out.id)["plugged"] is True
    plug(sessions, hosts, spice_down, out.id, on=False)
    assert view(sessions, out.id)["plugged"] is False
    assert fake.calls == []


def test_pending_unplug_stays_unplugging_with_plugged_false(sessions, hosts, fake, spice_up, db):
    out = add(sessions, hosts, spice_up)
    fake.pending_unplug = True
    assert plug(sessions, hosts, spice_up, out.id, on=False).pending
    got = view(sessions, out.id)
    assert (got["plugged"], got["plug_state"]) == (False, "unplugging") and got["address"] is not None
    assert db.codes(spice_up.id)[-1] == "REDIRDEV_UNPLUG_PENDING"
    with pytest.raises(Conflict):
        plug(sessions, hosts, spice_up, out.id)
    with pytest.raises(Conflict):
        remove(sessions, hosts, spice_up, out.id)


def test_unplug_failure_keeps_it_plugged(sessions, hosts, fake, spice_up, db):
    out = add(sessions, hosts, spice_up)
    fake.fail("VM.hotunplugRedirdev", "redirdevUnplugFailed")
    with pytest.raises(HostCallFailed):
        plug(sessions, hosts, spice_up, out.id, on=False)
    got = view(sessions, out.id)
    assert (got["plugged"], got["plug_state"]) == (True, "stable") and got["address"]
    assert db.codes(spice_up.id)[-1] == "REDIRDEV_UNPLUG_FAILED"


def test_activate_twice_is_refused(sessions, hosts, fake, spice_up, db):
    out = add(sessions, hosts, spice_up)
    refused(sessions, db, fake, "REDIRDEV_PLUG", lambda: plug(sessions, hosts, spice_up, out.id),
            "REDIRDEV_ALREADY_PLUGGED")


# ---- remove ---------------------------------------------------------------------------------------

def test_remove_plugged_on_running_vm_is_refused(sessions, hosts, fake, spice_up, db):
    out = add(sessions, hosts, spice_up)
    refused(sessions, db, fake, "REDIRDEV_REMOVE", lambda: remove(sessions, hosts, spice_up, out.id),
            "PLUGGED_ON_RUNNING_VM")
    assert fake.domain(spice_up.id).find(alias=f"ua-{out.id}") is not None


def test_remove_when_deactivated_on_running_vm(sessions, hosts, fake, spice_up, db):
    out = add(sessions, hosts, spice_up)
    plug(sessions, hosts, spice_up, out.id, on=False)
    remove(sessions, hosts, spice_up, out.id)
    assert redirdevs(sessions, spice_up) == []
    assert db.codes(spice_up.id)[-1] == "REDIRDEV_REMOVED"


def test_remove_plugged_on_down_vm(sessions, hosts, fake, spice_down, db):
    out = add(sessions, hosts, spice_down)
    remove(sessions, hosts, spice_down, out.id)
    assert redirdevs(sessions, spice_down) == []
    assert fake.calls == []


def test_unknown_ids_and_other_kinds_are_not_found(sessions, hosts, spice_down, make_vm, make_nic):
    nic = make_nic(spice_down)
    controller = add_controller.execute(sessions, hosts, add_controller.Params(spice_down.id, "ehci"))
    theirs = add(sessions, hosts, make_vm(status="down", graphics="spice"))
    for vm_id, dev_id in (("nope", "nope"), (spice_down.id, "nope"), (spice_down.id, nic.id),
                          (spice_down.id, controller.id), (spice_down.id, theirs.id)):
        vm = SimpleNamespace(id=vm_id)
        with pytest.raises(NotFound):
            plug(sessions, hosts, vm, dev_id)
        with pytest.raises(NotFound):
            plug(sessions, hosts, vm, dev_id, on=False)
        with pytest.raises(NotFound):
            remove(sessions, hosts, vm, dev_id)
