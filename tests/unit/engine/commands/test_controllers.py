"""USB controllers end to end: add_controller and remove_controller over the database and a FakeHost,
and what run_vm sends for them. Rows are read back as the API shows them (engine.api.views)."""
from __future__ import annotations

from typing import Any

import pytest

from engine.api.views import controller_view
from engine.commands import add_controller, add_redirdev, plug_unplug_redirdev, remove_controller, run_vm
from engine.dao import devices
from engine.errors import NotFound, ValidationFailed
from tests.unit.engine.commands.refusals import refused, rows

USB_BUS_1 = {"type": "usb", "bus": "1", "port": "1"}


def add(sessions, hosts, vm, model, **kw):
    return add_controller.execute(sessions, hosts, add_controller.Params(vm.id, model, **kw))


def remove(sessions, hosts, vm, controller_id):
    return remove_controller.execute(sessions, hosts, remove_controller.Params(vm.id, controller_id))


def add_spice(sessions, hosts, vm, **kw):
    return add_redirdev.execute(sessions, hosts, add_redirdev.Params(vm.id, "spicevmc", **kw))


def controllers(sessions, vm) -> list[dict[str, Any]]:
    """The VM's controllers as the API shows them, by index then model."""
    with sessions.begin() as s:
        views = [controller_view(d) for d in devices.list_for_vm(s, vm.id, type="controller")]
    return sorted(views, key=lambda v: (v["index"], v["model"]))


def brief(views: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(v["model"], v["index"], v["ports"], v["master"]) for v in views]


@pytest.fixture
def spice_vm(make_vm):
    return make_vm(status="down", graphics="spice")


# ---- add ------------------------------------------------------------------------------------------

def test_add_with_a_libvirt_model(sessions, hosts, fake, down_vm, db):
    out = add(sessions, hosts, down_vm, "ich9-ehci1")
    assert out.created and out.ids == (out.id,)
    [view] = controllers(sessions, down_vm)
    assert view["id"] == out.id and view["type"] == "usb"
    assert brief([view]) == [("ich9-ehci1", 0, None, None)]
    assert (view["plugged"], view["plug_state"], view["alias"]) == (True, "stable", f"ua-{out.id}")
    assert fake.calls == []
    [event] = db.events(down_vm.id)
    assert (event.code, event.device_id) == ("CONTROLLER_ADDED", out.id)


@pytest.mark.parametrize("short, model", [("ehci", "ehci"), ("xhci", "qemu-xhci"), ("uhci", "piix3-uhci")])
def test_add_with_the_seeds_short_names(sessions, hosts, down_vm, short, model):
    add(sessions, hosts, down_vm, short)
    assert brief(controllers(sessions, down_vm)) == [(model, 0, None, None)]


def test_count_two_gets_the_next_two_free_indexes(sessions, hosts, down_vm, db):
    add(sessions, hosts, down_vm, "ehci", index=0)
    add(sessions, hosts, down_vm, "ehci", index=2)
    out = add(sessions, hosts, down_vm, "ehci", count=2)
    assert len(out.ids) == 2 and out.id == out.ids[0]
    got = {v["id"]: v["index"] for v in controllers(sessions, down_vm)}
    assert sorted(got[i] for i in out.ids) == [1, 3]
    assert sorted(got.values()) == [0, 1, 2, 3]
    assert db.codes(down_vm.id).count("CONTROLLER_ADDED") == 4


def test_given_index_is_used(sessions, hosts, down_vm):
    add(sessions, hosts, down_vm, "qemu-xhci", index=7)
    assert brief(controllers(sessions, down_vm)) == [("qemu-xhci", 7, None, None)]


def test_given_index_in_use_is_refused(sessions, hosts, fake, down_vm, db):
    add(sessions, hosts, down_vm, "ehci", index=3)
    refused(sessions, db, fake, "CONTROLLER_ADD", lambda: add(sessions, hosts, down_vm, "qemu-xhci", index=3),
            "CONTROLLER_INDEX_IN_USE")
    assert brief(controllers(sessions, down_vm)) == [("ehci", 3, None, None)]


@pytest.mark.parametrize("index", [-1, 32, 1000])
def test_index_out_of_range_is_refused(sessions, hosts, fake, down_vm, db, index):
    refused(sessions, db, fake, "CONTROLLER_ADD", lambda: add(sessions, hosts, down_vm, "ehci", index=index),
            "CONTROLLER_INDEX_INVALID")


def test_count_running_past_the_last_index_is_refused(sessions, hosts, fake, down_vm, db):
    add(sessions, hosts, down_vm, "ehci", index=31)
    for _ in range(4):
        add(sessions, hosts, down_vm, "ehci", count=7)      # indexes 0..27
    refused(sessions, db, fake, "CONTROLLER_ADD", lambda: add(sessions, hosts, down_vm, "ehci", count=4),
            "CONTROLLER_INDEX_INVALID")
    add(sessions, hosts, down_vm, "ehci", count=3)          # 28..30 still fit
    assert [v["index"] for v in controllers(sessions, down_vm)] == list(range(32))


@pytest.mark.parametrize("count", [0, -1, 9, 100])
def test_count_out_of_range_is_refused(sessions, hosts, fake, down_vm, db, count):
    err = refused(sessions, db, fake, "CONTROLLER_ADD", lambda: add(sessions, hosts, down_vm, "ehci", count=count),
                  "FIELD_INVALID")
    assert err.reasons[0].vars["field"] == "count"


def test_unknown_model_is_refused(sessions, hosts, fake, down_vm, db):
    refused(sessions, db, fake, "CONTROLLER_ADD", lambda: add(sessions, hosts, down_vm, "ohci9000"),
            "CONTROLLER_MODEL_UNKNOWN")


@pytest.mark.parametrize("kind", ["scsi", "virtio-serial", "pci", ""])
def test_type_other_than_usb_is_refused(sessions, hosts, fake, down_vm, db, kind):
    refused(sessions, db, fake, "CONTROLLER_ADD", lambda: add(sessions, hosts, down_vm, "ehci", type=kind),
            "CONTROLLER_TYPE_UNSUPPORTED")


@pytest.mark.parametrize("model", ["qemu-xhci", "nec-xhci", "xhci"])
def test_ports_on_xhci(sessions, hosts, down_vm, model):
    add(sessions, hosts, down_vm, model, ports=8)
    [view] = controllers(sessions, down_vm)
    assert view["ports"] == 8


@pytest.mark.parametrize("model, ports", [("ehci", 4), ("ich9-ehci1", 4), ("piix3-uhci", 2), ("uhci", 2),
                                          ("qemu-xhci", 0), ("qemu-xhci", 16)])
def test_ports_only_on_xhci_and_in_range(sessions, hosts, fake, down_vm, db, model, ports):
    err = refused(sessions, db, fake, "CONTROLLER_ADD",
                  lambda: add(sessions, hosts, down_vm, model, ports=ports), "FIELD_INVALID")
    assert err.reasons[0].vars["field"] == "ports"


@pytest.mark.parametrize("model", ["ehci", "qemu-xhci", "piix3-uhci", "ich9-uhci1"])
def test_companions_only_on_ich9_ehci1(sessions, hosts, fake, down_vm, db, model):
    err = refused(sessions, db, fake, "CONTROLLER_ADD",
                  lambda: add(sessions, hosts, down_vm, model, companions=True), "FIELD_INVALID")
    assert err.reasons[0].vars["field"] == "companions"


def test_ich9_ehci1_with_companions_is_four_controllers_at_one_index(sessions, hosts, down_vm, db):
    add(sessions, hosts, down_vm, "xhci")                   # index 0
    out = add(sessions, hosts, down_vm, "ich9-ehci1", companions=True)
    assert len(out.ids) == 4
    views = controllers(sessions, down_vm)
    assert {v["id"] for v in views if v["index"] == 1} == set(out.ids)
    assert brief(views) == [("qemu-xhci", 0, None, None), ("ich9-ehci1", 1, None, None),
                            ("ich9-uhci1", 1, None, 0), ("ich9-uhci2", 1, None, 2), ("ich9-uhci3", 1, None, 4)]
    master = next(v for v in views if v["model"] == "ich9-ehci1")
    assert out.id == master["id"]
    assert all(v["plugged"] and v["plug_state"] == "stable" for v in views)
    assert db.codes(down_vm.id).count("CONTROLLER_ADDED") == 5


def test_every_reason_is_listed(sessions, hosts, fake, up_vm, db):
    refused(sessions, db, fake, "CONTROLLER_ADD",
            lambda: add(sessions, hosts, up_vm, "nosuch", type="scsi", count=0, companions=True),
            "NOT_HOTPLUGGABLE", "CONTROLLER_TYPE_UNSUPPORTED", "CONTROLLER_MODEL_UNKNOWN", "FIELD_INVALID",
            "FIELD_INVALID")



@pytest.mark.parametrize("first, second", [("ehci", "none"), ("none", "qemu-xhci")])
def test_model_none_does_not_share_a_vm_with_other_usb_controllers(sessions, hosts, fake, down_vm, db, first,
                                                                   second):
    """Model none disables USB on the VM (engine/usb.py); next to another USB controller libvirt refuses
    the domain ("USB is disabled for this domain"), so the engine must refuse the pair."""
    add(sessions, hosts, down_vm, first)
    before = rows(sessions)
    with pytest.raises(ValidationFailed):
        add(sessions, hosts, down_vm, second)
    assert rows(sessions) == before
    assert db.codes(down_vm.id)[-1] == "CONTROLLER_ADD_REFUSED"

# ---- cold plug only ------------------------------------------------------------------------------

def test_add_on_running_vm_is_refused_without_a_host_call(sessions, hosts, fake, up_vm, db):
    err = refused(sessions, db, fake, "CONTROLLER_ADD", lambda: add(sessions, hosts, up_vm, "qemu-xhci"),
                  "NOT_HOTPLUGGABLE")
    assert "stop the VM first" in err.reasons[0].message
    assert fake.calls == []
    assert controllers(sessions, up_vm) == []


@pytest.mark.parametrize("status", ["paused", "powering_up", "powering_down"])
def test_add_on_a_vm_that_is_not_down_is_refused(sessions, hosts, fake, make_vm, host, db, status):
    vm = make_vm(status=status, host=host)
    refused(sessions, db, fake, "CONTROLLER_ADD", lambda: add(sessions, hosts, vm, "ehci"), "NOT_HOTPLUGGABLE")


def test_remove_on_running_vm_is_refused_without_a_host_call(sessions, hosts, fake, host, make_vm, db):
    vm = make_vm(status="down")
    out = add(sessions, hosts, vm, "qemu-xhci")
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id, host.id))
    fake.calls.clear()
    err = refused(sessions, db, fake, "CONTROLLER_REMOVE", lambda: remove(sessions, hosts, vm, out.id),
                  "NOT_HOTPLUGGABLE")
    assert "stop the VM first" in err.reasons[0].message
    assert fake.calls == []
    assert [v["id"] for v in controllers(sessions, vm)] == [out.id]


# ---- remove --------------------------------------------------------------------------------------

def test_remove_a_controller_of_a_down_vm(sessions, hosts, fake, down_vm, db):
    keep = add(sessions, hosts, down_vm, "ehci")
    out = add(sessions, hosts, down_vm, "qemu-xhci")
    remove(sessions, hosts, down_vm, out.id)
    assert [v["id"] for v in controllers(sessions, down_vm)] == [keep.id]
    assert db.codes(down_vm.id)[-1] == "CONTROLLER_REMOVED"
    assert fake.calls == []


def test_remove_refused_while_a_plugged_redirdev_sits_on_its_bus(sessions, hosts, fake, spice_vm, db):
    ehci = add(sessions, hosts, spice_vm, "ehci")           # index 0
    xhci = add(sessions, hosts, spice_vm, "qemu-xhci")      # index 1
    redir = add_spice(sessions, hosts, spice_vm)
    with sessions.begin() as s:                             # where libvirt put it at the last run
        devices.set_address(s, redir.id, USB_BUS_1)
    err = refused(sessions, db, fake, "CONTROLLER_REMOVE", lambda: remove(sessions, hosts, spice_vm, xhci.id),
                  "CONTROLLER_CARRIES_DEVICES")
    assert f"ua-{redir.id}" in err.reasons[0].message
    remove(sessions, hosts, spice_vm, ehci.id)              # nothing on bus 0
    assert [v["id"] for v in controllers(sessions, spice_vm)] == [xhci.id]


def test_remove_of_the_last_controller_refused_while_any_usb_device_is_plugged(sessions, hosts, fake, spice_vm,
                                                                              db):
    only = add(sessions, hosts, spice_vm, "ehci")
    redir = add_spice(sessions, hosts, spice_vm)            # plugged, no address yet
    refused(sessions, db, fake, "CONTROLLER_REMOVE", lambda: remove(sessions, hosts, spice_vm, only.id),
            "CONTROLLER_CARRIES_DEVICES")
    plug_unplug_redirdev.execute(sessions, hosts, plug_unplug_redirdev.Params(spice_vm.id, redir.id, False))
    remove(sessions, hosts, spice_vm, only.id)
    assert controllers(sessions, spice_vm) == []


def test_remove_of_the_last_master_counts_its_companions_out(sessions, hosts, fake, spice_vm, db):
    """An ich9-ehci1 and its companions are one controller: it is the VM's last."""
    out = add(sessions, hosts, spice_vm, "ich9-ehci1", companions=True)
    add_spice(sessions, hosts, spice_vm)
    refused(sessions, db, fake, "CONTROLLER_REMOVE", lambda: remove(sessions, hosts, spice_vm, out.id),
            "CONTROLLER_CARRIES_DEVICES")


def test_a_deactivated_redirdev_does_not_hold_its_controller(sessions, hosts, spice_vm, db):
    add(sessions, hosts, spice_vm, "ehci")
    xhci = add(sessions, hosts, spice_vm, "qemu-xhci")
    add_spice(sessions, hosts, spice_vm, active=False)
    remove(sessions, hosts, spice_vm, xhci.id)
    assert len(controllers(sessions, spice_vm)) == 1


def test_removing_an_ehci_removes_its_companions(sessions, hosts, down_vm, db):
    other = add(sessions, hosts, down_vm, "qemu-xhci")      # index 0, stays
    ehci = add(sessions, hosts, down_vm, "ich9-ehci1", companions=True)
    assert len(controllers(sessions, down_vm)) == 5
    remove(sessions, hosts, down_vm, ehci.id)
    assert [v["id"] for v in controllers(sessions, down_vm)] == [other.id]
    removed = db.events(down_vm.id, code="CONTROLLER_REMOVED")
    assert sorted(e.device_id for e in removed) == sorted(ehci.ids)


def test_removing_a_controller_never_leaves_more_plugged_usb_devices_than_ports(sessions, hosts, fake, spice_vm,
                                                                               db):
    """ehci (6 ports) + qemu-xhci (4 ports) carry 10 redirection devices that have no address yet (the VM
    never ran). Without the xHCI the VM would have 10 devices on 6 ports and could not start: the
    removal must be refused."""
    add(sessions, hosts, spice_vm, "ehci")
    xhci = add(sessions, hosts, spice_vm, "qemu-xhci")
    for _ in range(10):
        add_spice(sessions, hosts, spice_vm)
    before = rows(sessions)
    with pytest.raises(ValidationFailed) as err:
        remove(sessions, hosts, spice_vm, xhci.id)
    assert [r.code for r in err.value.reasons] == ["USB_PORTS_SHORT"]
    assert rows(sessions) == before
    assert db.codes(spice_vm.id)[-1] == "CONTROLLER_REMOVE_REFUSED"


def test_remove_unknown_or_foreign_ids_is_not_found(sessions, hosts, down_vm, make_vm, make_nic):
    nic = make_nic(down_vm)
    theirs = add(sessions, hosts, make_vm(), "ehci")
    for vm_id, dev_id in (("nope", "nope"), (down_vm.id, "nope"), (down_vm.id, nic.id), (down_vm.id, theirs.id)):
        with pytest.raises(NotFound):
            remove_controller.execute(sessions, hosts, remove_controller.Params(vm_id, dev_id))


# ---- what the host gets at the next start ---------------------------------------------------------

def test_run_vm_sends_the_controllers_with_model_and_index(sessions, hosts, fake, host, make_vm, db):
    vm = make_vm(status="down", machine="q35")
    xhci = add(sessions, hosts, vm, "xhci", ports=8)
    ehci = add(sessions, hosts, vm, "ehci", index=5)
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id, host.id))
    [create] = fake.sent("VM.create")
    sent = {d["alias"]: d for d in create["params"]["devices"] if d["type"] == "controller"}
    assert sent == {
        f"ua-{xhci.id}": {"type": "controller", "device": "usb", "alias": f"ua-{xhci.id}", "model": "qemu-xhci",
                          "index": 0, "ports": 8},
        f"ua-{ehci.id}": {"type": "controller", "device": "usb", "alias": f"ua-{ehci.id}", "model": "ehci",
                          "index": 5},
    }
    assert db.vm(vm.id).status == "up"
    # the address libvirt gave each one is kept, and sent again at the next start
    views = {v["id"]: v for v in controllers(sessions, vm)}
    live = fake.domain(vm.id)
    for dev_id in (xhci.id, ehci.id):
        assert views[dev_id]["address"] == live.find(alias=f"ua-{dev_id}")["address"]


def test_run_vm_sends_ehci_companions_with_their_master_start_port(sessions, hosts, fake, host, make_vm, db):
    """What the engine sends for companions must be what the agent accepts (schema/verbs.yaml
    `controller`): the VM starts, and each companion says which ports of its EHCI it serves."""
    vm = make_vm(status="down")
    ehci = add(sessions, hosts, vm, "ich9-ehci1", companions=True)
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id, host.id))
    assert db.vm(vm.id).status == "up"
    [create] = fake.sent("VM.create")
    sent = sorted((d["model"], d["index"], d.get("master")) for d in create["params"]["devices"]
                  if d["type"] == "controller")
    assert sent == [("ich9-ehci1", 0, None), ("ich9-uhci1", 0, {"startport": 0}),
                    ("ich9-uhci2", 0, {"startport": 2}), ("ich9-uhci3", 0, {"startport": 4})]
    assert {d["alias"] for d in create["params"]["devices"]} == {f"ua-{i}" for i in ehci.ids}


def test_a_model_qemu_for_x86_lacks_is_refused(sessions, hosts, down_vm):
    with pytest.raises(ValidationFailed) as err:
        add(sessions, hosts, down_vm, "vt82c686b-uhci")
    assert [r.code for r in err.value.reasons] == ["CONTROLLER_MODEL_UNKNOWN"]


@pytest.mark.parametrize("model", ["piix3-uhci", "piix4-uhci", "ich9-uhci1", "ehci", "ich9-ehci1",
                                   "pci-ohci", "nec-xhci", "qemu-xhci"])
def test_every_model_add_accepts_can_be_started(sessions, hosts, fake, host, make_vm, db, model):
    """A controller the engine accepts must not make the VM unstartable: the agent's schema has to
    accept the model too."""
    vm = make_vm(status="down")
    add(sessions, hosts, vm, model)
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id, host.id))
    assert db.vm(vm.id).status == "up"
    [create] = fake.sent("VM.create")
    assert [d["model"] for d in create["params"]["devices"]] == [model]

