"""VM lifecycle verbs over the fake hypervisor: orders of calls and events that a real host produces
only sometimes (a destroy that arrives while a create is still running)."""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from vdsm_plugin.errors import AgentError
from vdsm_plugin.verbs import vm as vm_verbs

PARAMS = {"name": "pb-unit", "memSize": 64, "vcpus": 1, "machine": "pc"}


def _in_thread(fn, *args, **kwargs):
    """Run fn in a thread; returns (thread, outcome) where outcome gets "result" or "error"."""
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = fn(*args, **kwargs)
        except AgentError as e:
            outcome["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, outcome


def test_destroy_waits_for_a_create_in_progress(fake_agent):
    """A destroy sent while the create is still starting the domain runs after it, and removes the
    domain the create made: no orphan, no error for either call."""
    hv = fake_agent.hv
    vm_id = str(uuid.uuid4())
    hv.start_gate = threading.Event()
    creating, created = _in_thread(vm_verbs.create, fake_agent, vm_id, dict(PARAMS))
    assert hv.start_entered.wait(5)

    destroying, destroyed = _in_thread(vm_verbs.destroy, fake_agent, vm_id)
    destroying.join(0.3)
    assert destroying.is_alive(), f"destroy did not wait for the create: {destroyed}"

    hv.start_gate.set()
    creating.join(5)
    destroying.join(5)
    assert "error" not in created and created["result"]["status"] == "up"
    assert destroyed == {"result": {"vmId": vm_id, "status": "down"}}
    assert not hv.exists(vm_id)
    assert [c for c, _ in hv.calls] == ["define", "start", "destroy"]


NIC = {"type": "interface", "device": "bridge", "network": "pbbr0", "alias": "ua-n1",
       "macAddr": "56:6f:1a:00:00:01", "nicModel": "pv"}


def test_create_replaces_a_shut_off_definition(fake_agent, vm_id):
    """The VM stopped outside the engine (crash, guest power-off, virsh destroy): its persistent
    definition is replaced by the engine's new one, which may have another name."""
    fake_agent.hv.stop_outside(vm_id)
    info = vm_verbs.create(fake_agent, vm_id, {**PARAMS, "devices": [NIC]})
    assert (info["status"], info["name"]) == ("up", "pb-unit")
    assert [d["alias"] for d in info["devices"]] == ["ua-n1"]


def test_a_create_that_cannot_start_leaves_the_definition_it_replaced(fake_agent, vm_id):
    from vdsm_plugin.virt import LibvirtFailure
    hv = fake_agent.hv
    hv.stop_outside(vm_id)
    before = hv.xml(vm_id, inactive=True)
    hv.start_error = LibvirtFailure(1, "internal error: process exited while connecting to monitor")
    with pytest.raises(AgentError) as e:
        vm_verbs.create(fake_agent, vm_id, {**PARAMS, "name": "pb-unit-new", "devices": [NIC]})
    assert e.value.name == "createErr"
    assert vm_id in hv.doms and not hv.running[vm_id]
    assert hv.xml(vm_id, inactive=True) == before


def test_a_before_vm_start_hook_edits_the_start_not_the_stored_definition(fake_agent):
    from tests.unit.vdsm_plugin.hooks.scripts import write_hook
    write_hook(fake_agent.config.hooks_dir, "before_vm_start", "10_drop_nics", """
        import os
        from lxml import etree
        path = os.environ["_hook_domxml"]
        tree = etree.parse(path)
        for el in tree.findall("devices/interface"):
            el.getparent().remove(el)
        tree.write(path)
    """, shell=False)
    hv = fake_agent.hv

    def defined_started_defined() -> list[tuple[str, bool]]:
        """The last define, start, define: whether each define's XML has the NIC. (The fake keeps one
        XML per domain; libvirt keeps a define made while the domain runs for its next start.)"""
        calls = [(c, "ua-n1" in str(arg)) for c, arg in hv.calls if c in ("define", "start")]
        return [(c, has) if c == "define" else (c, False) for c, has in calls[-3:]]

    vm_id = str(uuid.uuid4())
    vm_verbs.create(fake_agent, vm_id, {**PARAMS, "devices": [NIC]})
    assert defined_started_defined() == [("define", False), ("start", False), ("define", True)]
    vm_verbs.destroy(fake_agent, vm_id)
    vm_verbs.define(fake_agent, vm_id, {**PARAMS, "devices": [NIC]})
    vm_verbs.start(fake_agent, vm_id)
    assert defined_started_defined() == [("define", False), ("start", False), ("define", True)]


def test_create_on_a_running_vm_is_exist(fake_agent, vm_id):
    with pytest.raises(AgentError) as e:
        vm_verbs.create(fake_agent, vm_id, dict(PARAMS))
    assert e.value.code == 4
    assert fake_agent.hv.calls == [] and fake_agent.hv.name(vm_id) == "vm"


def test_create_again_may_take_the_host_device_its_old_definition_holds(fake_agent):
    """A shut-off definition that holds a USB device does not make that device busy for the VM's
    own new definition; another VM still cannot have it."""
    from pathlib import Path

    stick = Path(__file__).parent / "fixtures" / "nodedev" / "usb_stick_serial.xml"
    fake_agent.hv.nodedevs = [stick.read_text()]
    usb = {"type": "hostdev", "device": "usb", "alias": "ua-u1", "source": {"vendor": "0x136b", "product": "0x0003"}}
    vm_id = str(uuid.uuid4())
    vm_verbs.define(fake_agent, vm_id, {**PARAMS, "name": "first", "devices": [usb]})
    info = vm_verbs.create(fake_agent, vm_id, {**PARAMS, "devices": [usb]})
    assert info["status"] == "up" and [d["alias"] for d in info["devices"]] == ["ua-u1"]
    with pytest.raises(AgentError) as e:
        vm_verbs.create(fake_agent, str(uuid.uuid4()), {**PARAMS, "name": "thief", "devices": [usb]})
    assert e.value.name == "hostdevBusy"


def test_a_device_plugged_into_one_vm_while_another_is_defined_with_it_goes_to_one_of_them(fake_agent, vm_id):
    """The plug's before-hook takes a while; a definition asking for the same stick meanwhile waits
    for the host-device lock, then finds the stick taken."""
    from pathlib import Path

    from tests.unit.vdsm_plugin.hooks.scripts import write_hook
    from vdsm_plugin.verbs import hostdev as hostdev_verbs

    stick = Path(__file__).parent / "fixtures" / "nodedev" / "usb_stick_serial.xml"
    fake_agent.hv.nodedevs = [stick.read_text()]
    write_hook(fake_agent.config.hooks_dir, "before_device_hotplug", "10_slow", "sleep 1\n")
    usb = {"type": "hostdev", "device": "usb", "alias": "ua-u1", "source": {"vendor": "0x136b", "product": "0x0003"}}
    answers: dict[str, object] = {}

    def plug() -> None:
        try:
            answers["plug"] = hostdev_verbs.hotplug_hostdev(fake_agent, vm_id, dict(usb))
        except AgentError as e:
            answers["plug"] = e.name

    t = threading.Thread(target=plug)
    t.start()
    time.sleep(0.3)                             # the plug is in its hook, the lock held
    try:
        answers["define"] = vm_verbs.define(fake_agent, str(uuid.uuid4()), {**PARAMS, "name": "other",
                                                                             "devices": [usb]})
    except AgentError as e:
        answers["define"] = e.name
    t.join(10)
    assert answers["define"] == "hostdevBusy" and isinstance(answers["plug"], dict), answers


@pytest.mark.parametrize("source", [{"portPath": "1-4.2"}, {"serial": "STEC0003A1B2C3"},
                                    {"vendor": "0x136b", "product": "0x0003"}])
def test_a_usb_device_asked_for_by_port_serial_or_ids_is_found_again_at_each_start(fake_agent, source):
    """Plugged in again, the stick got another device number: the start names the new one, and the
    request stays in the definition for the next start."""
    from pathlib import Path

    stick = (Path(__file__).parent / "fixtures" / "nodedev" / "usb_stick_serial.xml").read_text()
    hv = fake_agent.hv
    hv.nodedevs = [stick]
    usb = {"type": "hostdev", "device": "usb", "alias": "ua-u1", "source": source}
    vm_id = str(uuid.uuid4())
    vm_verbs.define(fake_agent, vm_id, {**PARAMS, "devices": [usb]})
    assert "device='7'" in hv.xml(vm_id).replace('"', "'")
    hv.nodedevs = [stick.replace("<device>7</device>", "<device>9</device>").replace("/001/007", "/001/009")]
    info = vm_verbs.start(fake_agent, vm_id)
    [dev] = [d for d in info["devices"] if d["type"] == "hostdev"]
    assert (dev["alias"], dev["source"]["bus"], dev["source"]["device"]) == ("ua-u1", "1", "9")
    vm_verbs.destroy(fake_agent, vm_id, undefine=False)
    hv.nodedevs = [stick.replace("<device>7</device>", "<device>12</device>")]
    info = vm_verbs.start(fake_agent, vm_id)
    assert [d["source"]["device"] for d in info["devices"] if d["type"] == "hostdev"] == ["12"]


def test_destroy_undefines_a_shut_off_vm(fake_agent, vm_id):
    fake_agent.hv.stop_outside(vm_id)
    assert vm_verbs.destroy(fake_agent, vm_id, undefine=True) == {"vmId": vm_id, "status": "down"}
    assert not fake_agent.hv.exists(vm_id)


def _lifecycle(agent, vm_id, after=0):
    events, _ = agent.journal.read(after=after, timeout=0)
    return [(e["seq"], e["data"]["event"]) for e in events if e["kind"] == "vm_lifecycle" and e["vmId"] == vm_id]


def test_create_answers_the_journal_position_of_its_start(fake_agent, vm_id):
    """libvirt's events reach the journal after the call that caused them returned: eventSeq is the
    seq of this start's "started" event, so the stop before it (and the undefine of the replaced
    definition) are at or before it and the engine can tell them stale."""
    fake_agent.hv.event_delay = 0.3
    fake_agent.hv.stop_outside(vm_id)
    info = vm_verbs.create(fake_agent, vm_id, dict(PARAMS))
    seen = _lifecycle(fake_agent, vm_id)
    assert (info["eventSeq"], "started") in seen
    assert [event for seq, event in seen if seq <= info["eventSeq"]] == ["stopped", "undefined", "defined", "started"]
    fake_agent.hv.stop_outside(vm_id)   # a real stop after the start is after eventSeq
    fake_agent.journal.wait_for(lambda e: e["data"].get("event") == "stopped", timeout=2, after=info["eventSeq"])
    assert _lifecycle(fake_agent, vm_id, after=info["eventSeq"])[-1][1] == "stopped"


def test_start_answers_the_journal_position_of_its_start(fake_agent):
    fake_agent.hv.event_delay = 0.3
    vm_id = str(uuid.uuid4())
    vm_verbs.define(fake_agent, vm_id, dict(PARAMS))
    info = vm_verbs.start(fake_agent, vm_id)
    assert info["status"] == "up"
    assert _lifecycle(fake_agent, vm_id)[-1] == (info["eventSeq"], "started")
    again = vm_verbs.start(fake_agent, vm_id)   # already up: nothing started, the journal's last seq
    assert again["eventSeq"] == fake_agent.journal.last


def test_create_and_start_results_follow_the_contract(fake_agent):
    from vdsm_plugin import validation

    vm_id = str(uuid.uuid4())
    fake_agent.hv.event_delay = 0
    assert validation.result_errors("VM.create", vm_verbs.create(fake_agent, vm_id, dict(PARAMS))) == []
    fake_agent.hv.stop_outside(vm_id)
    assert validation.result_errors("VM.start", vm_verbs.start(fake_agent, vm_id)) == []
    assert validation.result_errors("VM.create", {"vmId": vm_id, "name": "x", "status": "up"}) != []


def test_without_a_started_event_event_seq_is_the_journal_end(fake_agent, monkeypatch):
    monkeypatch.setattr(vm_verbs, "STARTED_EVENT_TIMEOUT", 0.2)
    fake_agent.hv.event_delay = 5          # the event comes too late
    fake_agent.journal.append("hostdev_added", data={"name": "usb_9_9"})
    info = vm_verbs.create(fake_agent, str(uuid.uuid4()), dict(PARAMS))
    assert info["eventSeq"] == fake_agent.journal.last == 1


def test_start_replaces_the_os_boot_libvirt_gave_a_stored_definition(fake_agent):
    """A definition stored while it had no device with a boot order got libvirt's <boot dev='hd'/>;
    VM.start defines it again with per-device boot order only, so a device with bootOrder can be
    hot-plugged into the running VM."""
    from lxml import etree

    from vdsm_plugin import domxml

    vm_id = str(uuid.uuid4())
    vm_verbs.define(fake_agent, vm_id, {**PARAMS, "devices": [NIC]})
    stored = fake_agent.hv.doms[vm_id]
    for boot in stored.iterfind("devices/*/boot"):
        boot.getparent().remove(boot)
    etree.SubElement(stored.find("os"), "boot", dev="hd")
    vm_verbs.start(fake_agent, vm_id)
    defined = domxml.parse([xml for call, xml in fake_agent.hv.calls if call == "define"][-1])
    assert defined.find("os/boot") is None
    assert domxml.find_device(defined, "ua-n1").find("boot").get("order") == str(domxml.LAST_BOOT_ORDER)
