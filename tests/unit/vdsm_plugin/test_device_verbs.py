"""Device verbs over the fake hypervisor: unplug outcomes for the event orders a real guest produces
only sometimes, plug failures, restarts, host device events."""
from __future__ import annotations

import time

import pytest

from vdsm_plugin.errors import AgentError
from vdsm_plugin.verbs import nic as nic_verbs

NIC = {"type": "interface", "device": "bridge", "network": "pbbr0", "alias": "ua-n1",
       "macAddr": "56:6f:1a:00:00:01", "nicModel": "pv"}


def _plug(agent, vm_id):
    return nic_verbs.hotplug_nic(agent, vm_id, dict(NIC))


def test_event_before_detach_returns_is_removed(fake_agent, vm_id):
    _plug(fake_agent, vm_id)
    fake_agent.hv.removal = "event"
    res = nic_verbs.hotunplug_nic(fake_agent, vm_id, {"alias": "ua-n1"})
    assert res["status"] == "removed" and res["alias"] == "ua-n1"
    events, _ = fake_agent.journal.read(after=0)
    assert [e["kind"] for e in events] == ["device_removed"]


def test_no_event_answers_pending_and_never_resends(fake_agent, vm_id):
    _plug(fake_agent, vm_id)
    fake_agent.hv.removal = "none"
    res = nic_verbs.hotunplug_nic(fake_agent, vm_id, {"alias": "ua-n1"})
    assert res == {"status": "pending", "alias": "ua-n1"}
    with pytest.raises(AgentError) as e:
        nic_verbs.hotunplug_nic(fake_agent, vm_id, {"alias": "ua-n1"})
    assert e.value.name == "operationInFlight"
    assert [c for c, _ in fake_agent.hv.calls].count("detach") == 1


def test_late_event_lands_in_journal(fake_agent, vm_id):
    _plug(fake_agent, vm_id)
    fake_agent.hv.removal = "late"
    fake_agent.hv.late_after = 0.8    # after the 0.5 s wait
    assert nic_verbs.hotunplug_nic(fake_agent, vm_id, {"alias": "ua-n1"})["status"] == "pending"
    events, _ = fake_agent.journal.read(after=0, timeout=3)
    assert events and events[0]["kind"] == "device_removed" and events[0]["alias"] == "ua-n1"


def test_removal_failed_is_a_coded_error(fake_agent, vm_id):
    _plug(fake_agent, vm_id)
    fake_agent.hv.removal = "failed"
    with pytest.raises(AgentError) as e:
        nic_verbs.hotunplug_nic(fake_agent, vm_id, {"alias": "ua-n1"})
    assert e.value.code == 50
    events, _ = fake_agent.journal.read(after=0, timeout=1)
    assert events[0]["kind"] == "device_removal_failed"
    # Nothing is left in flight: a new attempt is sent.
    fake_agent.hv.removal = "event"
    assert nic_verbs.hotunplug_nic(fake_agent, vm_id, {"alias": "ua-n1"})["status"] == "removed"


def test_libvirt_refusal_leaves_nothing_in_flight(fake_agent, vm_id):
    _plug(fake_agent, vm_id)
    fake_agent.hv.removal = "refuse"
    with pytest.raises(AgentError) as e:
        nic_verbs.hotunplug_nic(fake_agent, vm_id, {"alias": "ua-n1"})
    assert e.value.code == 50 and e.value.data["libvirtCode"] == 1
    assert fake_agent.removals.pending(vm_id) == []


def test_unplug_by_mac(fake_agent, vm_id):
    _plug(fake_agent, vm_id)
    res = nic_verbs.hotunplug_nic(fake_agent, vm_id, {"macAddr": "56:6F:1A:00:00:01"})
    assert res["status"] == "removed" and res["alias"] == "ua-n1"


def test_unknown_device_and_vm(fake_agent, vm_id):
    with pytest.raises(AgentError) as e:
        nic_verbs.hotunplug_nic(fake_agent, vm_id, {"alias": "ua-missing"})
    assert e.value.name == "deviceNotFound"
    with pytest.raises(AgentError) as e:
        nic_verbs.hotplug_nic(fake_agent, "00000000-0000-0000-0000-000000000000", dict(NIC))
    assert e.value.code == 1


def test_stopped_vm_detach_is_config_only_and_immediate(fake_agent, vm_id):
    fake_agent.hv.running[vm_id] = False
    _plug(fake_agent, vm_id)
    fake_agent.hv.removal = "none"       # would hang a live unplug; a config change does not wait
    start = time.monotonic()
    assert nic_verbs.hotunplug_nic(fake_agent, vm_id, {"alias": "ua-n1"})["status"] == "removed"
    assert time.monotonic() - start < 0.4


def test_plug_failure_is_code_49_and_leaves_no_device(fake_agent, vm_id):
    from vdsm_plugin.virt import LibvirtFailure
    fake_agent.hv.attach_error = LibvirtFailure(1, "No more available PCI slots")
    with pytest.raises(AgentError) as e:
        _plug(fake_agent, vm_id)
    assert e.value.code == 49 and "PCI slots" in str(e.value)
    assert "ua-n1" not in fake_agent.hv.xml(vm_id)


def test_a_hook_that_renames_the_device_is_refused_before_anything_is_attached(fake_agent, vm_id):
    from tests.unit.vdsm_plugin.hooks.scripts import write_hook
    write_hook(fake_agent.config.hooks_dir, "before_nic_hotplug", "10_rename",
               """sed -i 's|ua-n1|ua-hooked|' "$_hook_domxml"\n""")
    with pytest.raises(AgentError) as e:
        _plug(fake_agent, vm_id)
    assert e.value.name == "hookFailed" and "ua-hooked" in str(e.value)
    assert "ua-n1" not in fake_agent.hv.xml(vm_id) and "ua-hooked" not in fake_agent.hv.xml(vm_id)


def test_duplicate_alias_refused(fake_agent, vm_id):
    _plug(fake_agent, vm_id)
    with pytest.raises(AgentError) as e:
        _plug(fake_agent, vm_id)
    assert e.value.code == 49 and "alias" in str(e.value)


def test_unplugs_in_flight_survive_a_restart(tmp_path, fake_agent, vm_id):
    """A pending detach is still not re-sent by the next agent process, and one that completed while
    no agent listened is reported at start."""
    from vdsm_plugin.journal import Journal
    from vdsm_plugin.removals import Removals

    path = tmp_path / "inflight.json"
    journal = Journal(tmp_path / "j.db")
    first = Removals(journal, path)
    first.expect(vm_id, "ua-a")
    first.expect(vm_id, "ua-b")

    second = Removals(journal, path)            # the restarted agent
    with pytest.raises(AgentError) as e:
        second.expect(vm_id, "ua-a")
    assert e.value.name == "operationInFlight"
    second.recover(lambda vm, alias: alias == "ua-a")   # ua-b left while the agent was down
    events, _ = journal.read(after=0)
    assert [(ev["kind"], ev["alias"], ev["data"]) for ev in events] == [("device_removed", "ua-b", {"recovered": True})]
    assert second.pending(vm_id) == ["ua-a"]
    second.on_removed(vm_id, "ua-a")
    assert Removals(journal, path).pending(vm_id) == []


def test_unplugs_in_flight_are_kept_in_the_journal_not_in_a_rewritten_file(tmp_path, vm_id):
    """Rewriting a file and renaming it over the old one cost every unplug 0.5 ms; a row of the
    journal's database costs a few tens of microseconds."""
    from vdsm_plugin.journal import Journal
    from vdsm_plugin.removals import Removals

    path = tmp_path / "inflight.json"
    journal = Journal(tmp_path / "j.db")
    removals = Removals(journal, path)
    removal = removals.expect(vm_id, "ua-a")
    assert not path.exists() and journal.unplugs_in_flight() == [(vm_id, "ua-a")]
    removals.abandon(removal)
    assert journal.unplugs_in_flight() == []
    removals.expect(vm_id, "ua-b")
    removals.forget_vm(vm_id)
    assert journal.unplugs_in_flight() == [] and not path.exists()


def test_the_in_flight_file_of_an_earlier_agent_is_taken_over(tmp_path, vm_id):
    import json

    from vdsm_plugin.journal import Journal
    from vdsm_plugin.removals import Removals

    path = tmp_path / "inflight.json"
    path.write_text(json.dumps([[vm_id, "ua-a"]]))
    journal = Journal(tmp_path / "j.db")
    removals = Removals(journal, path)
    assert removals.pending(vm_id) == ["ua-a"] and not path.exists()
    assert Removals(journal, path).pending(vm_id) == ["ua-a"]     # and the next restart still has it


def test_host_devices_appearing_and_vanishing_are_journaled(fake_agent):
    fake_agent.hv.nodedev_kinds.update({"usb_1_4_2": ["usb_device"], "usb_1_4_2_1_0": ["usb"],
                                        "net_eth0_52_54_00_12_34_56": ["net"]})
    fake_agent._on_nodedev("usb_1_4_2", "created")
    fake_agent._on_nodedev("usb_1_4_2_1_0", "created")      # its interface: not a device of its own
    fake_agent._on_nodedev("net_eth0_52_54_00_12_34_56", "created")   # not a passthrough candidate
    fake_agent._on_nodedev("usb_1_4_2_1_0", "deleted")
    fake_agent._on_nodedev("usb_1_4_2", "deleted")
    events, _ = fake_agent.journal.read(after=0)
    assert [(e["kind"], e["data"]["name"]) for e in events] == [("hostdev_added", "usb_1_4_2"),
                                                                ("hostdev_removed", "usb_1_4_2")]


def test_host_device_present_at_start_is_journaled_when_it_goes(fake_agent):
    # A real stick pulled: libvirt sends "deleted" for the device and its interface; only the
    # device's name, known since the agent started, is a host device.
    fake_agent.hostdev_names.add("usb_2_3")
    fake_agent._on_nodedev("usb_2_3_1_0", "deleted")
    fake_agent._on_nodedev("usb_2_3", "deleted")
    events, _ = fake_agent.journal.read(after=0)
    assert [(e["kind"], e["data"]["name"]) for e in events] == [("hostdev_removed", "usb_2_3")]


def test_port_mirroring_is_refused_not_ignored(fake_agent, vm_id):
    with pytest.raises(AgentError) as e:
        nic_verbs.hotplug_nic(fake_agent, vm_id, {**NIC, "promisc": "pbbr0"})
    assert e.value.code == 49 and e.value.data["field"] == "nic/promisc"
    assert fake_agent.hv.calls == []


# One device of each kind on a stopped VM (so that the USB controller can be there too).
OTHER_KINDS = {
    "interface": NIC,
    "hostdev": {"type": "hostdev", "device": "usb", "alias": "ua-h1",
                "source": {"vendor": "0x136b", "product": "0x0003", "bus": 1, "device": 7}},
    "redirdev": {"type": "redirdev", "device": "spicevmc", "alias": "ua-r1"},
    "controller": {"type": "controller", "device": "usb", "model": "nec-xhci", "index": 3, "alias": "ua-c1"},
}


def _one_of_each(agent, vm_id):
    from vdsm_plugin import domxml
    agent.hv.running[vm_id] = False
    for dev in OTHER_KINDS.values():
        agent.hv.attach(vm_id, domxml.tostring(domxml.build_device(dev)), agent.hv.AFFECT_CONFIG)
    agent.hv.calls.clear()


def _unplug_verbs():
    from vdsm_plugin.verbs import controller, hostdev, redirdev
    return {
        "interface": lambda a, vm, ref: nic_verbs.hotunplug_nic(a, vm, ref),
        "hostdev": lambda a, vm, ref: hostdev.hotunplug_hostdev(a, vm, ref),
        "redirdev": lambda a, vm, ref: redirdev.hotunplug_redirdev(a, vm, ref),
        "controller": lambda a, vm, ref: controller.remove_controller(a, vm, ref),
    }


@pytest.mark.parametrize("verb_kind", sorted(OTHER_KINDS))
@pytest.mark.parametrize("dev_kind", sorted(OTHER_KINDS))
def test_unplug_verbs_act_only_on_their_own_kind(fake_agent, vm_id, verb_kind, dev_kind):
    """hotunplugNic once removed a SPICE redirection device, hotunplugHostdev a NIC, and
    hotunplugRedirdev a USB controller: an alias of another kind is refused and nothing changes."""
    _one_of_each(fake_agent, vm_id)
    alias = OTHER_KINDS[dev_kind]["alias"]
    unplug = _unplug_verbs()[verb_kind]
    if verb_kind == dev_kind:
        assert unplug(fake_agent, vm_id, {"alias": alias})["status"] == "removed"
        return
    with pytest.raises(AgentError) as e:
        unplug(fake_agent, vm_id, {"alias": alias})
    assert e.value.code == 304 and e.value.data["kind"] == dev_kind
    assert f"{alias} is a {dev_kind}" in str(e.value)
    assert fake_agent.hv.calls == []
    assert alias in fake_agent.hv.xml(vm_id)


def test_update_nic_refuses_another_kind(fake_agent, vm_id):
    _one_of_each(fake_agent, vm_id)
    with pytest.raises(AgentError) as e:
        nic_verbs.update_nic(fake_agent, vm_id, {"alias": "ua-r1", "linkActive": False})
    assert e.value.code == 304 and e.value.data["kind"] == "redirdev"


def test_plug_without_alias_names_the_device(fake_agent, vm_id):
    """VDSM's hotplugNic params carry no alias: the agent names the device ua-<uuid4> and answers it."""
    import re

    from vdsm_plugin.verbs import redirdev

    res = nic_verbs.hotplug_nic(fake_agent, vm_id, {k: v for k, v in NIC.items() if k != "alias"})
    assert re.fullmatch(r"ua-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", res["alias"])
    assert res["macAddr"] == NIC["macAddr"] and res["alias"] in fake_agent.hv.xml(vm_id)
    red = redirdev.hotplug_redirdev(fake_agent, vm_id, {"type": "redirdev", "device": "spicevmc"})
    assert red["alias"].startswith("ua-") and red["alias"] != res["alias"]
    assert nic_verbs.hotunplug_nic(fake_agent, vm_id, {"alias": res["alias"]})["status"] == "removed"


def test_added_ehci_gets_function_0_of_a_free_slot(fake_agent, vm_id):
    """The stopped domain's slots are known: a lone ich9-ehci1 takes the highest free one, function 0."""
    from vdsm_plugin.verbs import controller

    fake_agent.hv.running[vm_id] = False
    ctl = {"type": "controller", "device": "usb", "model": "ich9-ehci1", "index": 1, "alias": "ua-e1"}
    assert controller.add_controller(fake_agent, vm_id, ctl)["address"]["slot"] == "0x1d"
    res = controller.add_controller(fake_agent, vm_id, {**ctl, "index": 2, "alias": "ua-e2"})
    assert (res["address"]["slot"], res["address"]["function"]) == ("0x1c", "0x0")
