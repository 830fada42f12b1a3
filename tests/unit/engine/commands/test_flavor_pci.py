"""A flavor's PCI devices by alias (extra spec pci_passthrough:alias, seed 003): the spec through
flavor_specs and the flavor commands, and RunVm -- placed on a host that has them free, claimed and
allocated with the VM's id, sent in VM.create as managed PCI sources, given back when the run ends
(stop command, or the monitor seeing the VM stop) or the start fails, refused naming what is missing,
a lost race sent to the next host; IOMMU groups kept whole."""
from __future__ import annotations

import pytest

from engine import flavor_specs as FS
from engine.commands import add_flavor, flavor_pci, pci_rules, run_vm, set_flavor_specs, stop_vm
from engine.dao import devices, flavors, host_devices, pci_devices, vms
from engine.dao.models import Flavor
from engine.errors import HostCallFailed, ValidationFailed
from engine.monitor import Monitor
from engine.pci_aliases import PciRequest, by_name
from tests.unit.engine.commands.refusals import refused
from tests.unit.engine.pci import ALIASES, CX5, I350, NVME, bridge, configure, double_allocations, fn, inventory, \
    statuses

KEY = "pci_passthrough:alias"


def codes(reasons):
    return [r.code for r in reasons]


# ---- the spec ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, wanted", [
    ("a1:2", [PciRequest("a1", 2)]),
    ("a1:2,b1:1", [PciRequest("a1", 2), PciRequest("b1", 1)]),
    ("a1", [PciRequest("a1", 1)]),
])
def test_valid_spec(value, wanted):
    specs = {KEY: value}
    assert FS.validate(specs, pci_alias_names=["a1", "b1"]) == []
    assert list(FS.pci_requests(specs)) == wanted
    assert FS.normalize(specs, pci_alias_names=["a1", "b1"])[0] == {KEY: value}     # kept as given


@pytest.mark.parametrize("value, rule", [
    ("a1:0", "'a1:0': the count must be a whole number from 1 to 16"),
    ("a1:17", "'a1:17': the count must be a whole number from 1 to 16"),
    ("a1:9,b1:8", "17 devices in all; at most 16"),
    ("a1:1,a1:1", "alias a1 is asked for twice"),
    ("a1:x", "'a1:x': the count must be a whole number from 1 to 16"),
    ("a1:²", "'a1:²': the count must be a whole number from 1 to 16"),
    ("a1:2,", "'' does not start with an alias name"),
    ("", "'' is not a request like \"a1:2\" or \"a1:2,b1:1\""),
])
def test_bad_spec_is_a_spec_value_invalid_naming_the_key(value, rule):
    reasons = FS.validate({KEY: value}, pci_alias_names=["a1", "b1"])
    assert codes(reasons) == ["SPEC_VALUE_INVALID"]
    assert reasons[0].vars["key"] == KEY and reasons[0].vars["rule"] == rule


def test_unknown_alias_is_refused_naming_it():
    reasons = FS.validate({KEY: "a1:2,x9:1"}, pci_alias_names=["b1", "a1"])
    assert codes(reasons) == ["PCI_ALIAS_UNKNOWN"]
    assert reasons[0].vars == {"alias": "x9", "known": ["a1", "b1"]}
    assert "PCI alias x9 is not configured (configured: a1, b1)" in reasons[0].message
    none = FS.validate({KEY: "a1:1"}, pci_alias_names=[])
    assert codes(none) == ["PCI_ALIAS_UNKNOWN"] and "(configured: none)" in none[0].message


def test_names_are_not_checked_when_not_given():
    """What a VM's flavor already has is read back without the configuration (flavor_pci.wants)."""
    assert FS.validate({KEY: "x9:1"}) == []


def test_add_flavor_and_set_flavor_specs_check_the_alias():
    params = add_flavor.Params(name="m1.pci", memory_mb=512, vcpus=1, extra_specs={KEY: "a1:2"})
    assert add_flavor.validate(params, name_in_use=False, id_in_use=False, pci_alias_names=["a1"]) == []
    assert codes(add_flavor.validate(params, name_in_use=False, id_in_use=False)) == ["PCI_ALIAS_UNKNOWN"]
    flavor = Flavor(id="f1", name="f1", memory_mb=512, vcpus=1, extra_specs={})
    change = set_flavor_specs.Params("f1", specs={KEY: "a1:2,b1:1"})
    assert set_flavor_specs.validate(change, flavor=flavor, pci_alias_names=["a1", "b1"]) == []
    reasons = set_flavor_specs.validate(change, flavor=flavor, pci_alias_names=["a1"])
    assert codes(reasons) == ["PCI_ALIAS_UNKNOWN"] and reasons[0].vars["alias"] == "b1"


def test_the_flavor_commands_read_the_configured_aliases(sessions, hosts, db):
    configure(sessions, *ALIASES)
    out = add_flavor.execute(sessions, hosts, add_flavor.Params(name="m1.pci", memory_mb=512, vcpus=1,
                                                                extra_specs={KEY: "a1:2"}))
    with pytest.raises(ValidationFailed) as err:
        add_flavor.execute(sessions, hosts, add_flavor.Params(name="m2.pci", memory_mb=512, vcpus=1,
                                                              extra_specs={KEY: "gpu:1"}))
    assert err.value.status == 400 and codes(err.value.reasons) == ["PCI_ALIAS_UNKNOWN"]
    assert err.value.reasons[0].vars == {"alias": "gpu", "known": ["a1", "b1", "c1"]}
    with pytest.raises(ValidationFailed) as err:
        set_flavor_specs.execute(sessions, hosts, set_flavor_specs.Params(out.id, specs={KEY: "a1:2,gpu:1"}))
    assert err.value.status == 400 and codes(err.value.reasons) == ["PCI_ALIAS_UNKNOWN"]
    set_flavor_specs.execute(sessions, hosts, set_flavor_specs.Params(out.id, specs={KEY: "a1:1,c1:1"}))
    with sessions() as s:
        assert flavors.get(s, out.id).extra_specs == {KEY: "a1:1,c1:1"}
    assert [e.code for e in db.events()].count("FLAVOR_SPECS_SET_REFUSED") == 1


# ---- RunVm ---------------------------------------------------------------------------------------

@pytest.fixture
def aliases(sessions):
    configure(sessions, *ALIASES)


@pytest.fixture
def flavor_vm(sessions, make_vm, aliases):
    made = iter(range(1000))

    def make(spec: str = "a1:2", **vm_kw):
        flavor = Flavor(name=f"pci{next(made)}", memory_mb=256, vcpus=1, extra_specs={KEY: spec})
        with sessions.begin() as s:
            s.add(flavor)
        return make_vm(flavor=flavor.id, **vm_kw)
    return make


@pytest.fixture
def host2(make_host, hosts):
    fake = hosts["host2"]
    return make_host("host2", capabilities=dict(fake.capabilities))


def pci_rows(sessions, vm):
    with sessions() as s:
        return [(d.host_device_id, d.is_plugged, d.spec_params, d.custom_properties)
                for d in devices.list_for_vm(s, vm.id, type="hostdev") if d.device == "pci"]


def test_the_vm_starts_with_its_devices_claimed_allocated_and_in_vm_create(sessions, hosts, fake, host, flavor_vm,
                                                                           db):
    ids = inventory(sessions, host, fn("0000:03:00.0", group=10), fn("0000:04:00.0", group=11),
                    fn("0000:05:00.0", group=12), fn("0000:06:00.0", NVME, group=13))
    vm = flavor_vm("a1:2")
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    assert (db.vm(vm.id).status, db.vm(vm.id).run_on_host) == ("up", host.id)
    assert statuses(sessions, host) == {"0000:03:00.0": ("allocated", vm.id), "0000:04:00.0": ("allocated", vm.id),
                                        "0000:05:00.0": ("available", None), "0000:06:00.0": ("available", None)}
    source = {"domain": "0x0000", "bus": "0x03", "slot": "0x00", "function": "0x0"}
    assert pci_rows(sessions, vm) == [
        (ids["0000:03:00.0"], True, {"source": source, "managed": True}, {"origin": "flavor", "pci_alias": "a1"}),
        (ids["0000:04:00.0"], True, {"source": {**source, "bus": "0x04"}, "managed": True},
         {"origin": "flavor", "pci_alias": "a1"})]
    (create,) = fake.sent("VM.create")
    sent = [d for d in create["params"]["devices"] if d["type"] == "hostdev"]
    with sessions() as s:
        aliases = [d.alias for d in devices.list_for_vm(s, vm.id, type="hostdev")]
    assert sent == [{"type": "hostdev", "device": "pci", "alias": aliases[0], "source": source, "managed": True},
                    {"type": "hostdev", "device": "pci", "alias": aliases[1], "source": {**source, "bus": "0x04"},
                     "managed": True}]
    assert [d["alias"] for d in fake.domain(vm.id).devices if d["type"] == "hostdev"] == aliases


def test_two_aliases_each_get_theirs(sessions, hosts, fake, host, flavor_vm):
    ids = inventory(sessions, host, fn("0000:03:00.0", I350), fn("0000:04:00.0"), fn("0000:05:00.0"),
                    fn("0000:06:00.0", CX5))
    vm = flavor_vm("a1:2,b1:1")         # b1 (an I350 only) is served first: a1 must not take the I350
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    got = {hd_id: props["pci_alias"] for hd_id, _, _, props in pci_rows(sessions, vm)}
    assert got == {ids["0000:03:00.0"]: "b1", ids["0000:04:00.0"]: "a1", ids["0000:05:00.0"]: "a1"}


def test_the_stop_command_gives_them_back_and_drops_the_rows_and_the_next_start_places_again(
        sessions, hosts, fake, host, host2, flavor_vm, make_vm, db):
    inventory(sessions, host, fn("0000:03:00.0", group=1), fn("0000:03:00.1", NVME, group=1),
              fn("0000:04:00.0", group=2))
    inventory(sessions, host2, fn("0000:03:00.0", group=1), fn("0000:04:00.0", group=2))
    make_vm(status="up", host=host2)            # host1 is the least loaded
    vm = flavor_vm("a1:2")
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    assert statuses(sessions, host) == {"0000:03:00.0": ("allocated", vm.id), "0000:03:00.1": ("unavailable", None),
                                        "0000:04:00.0": ("allocated", vm.id)}
    stop_vm.execute(sessions, hosts, stop_vm.Params(vm.id))
    assert {st for st, _ in statuses(sessions, host).values()} == {"available"}      # the sibling too
    assert pci_rows(sessions, vm) == []
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id, host_id=host2.id))
    assert {st for st, _ in statuses(sessions, host).values()} == {"available"}
    assert statuses(sessions, host2) == {"0000:03:00.0": ("allocated", vm.id), "0000:04:00.0": ("allocated", vm.id)}
    assert len(pci_rows(sessions, vm)) == 2
    assert double_allocations(sessions) == []


def test_the_monitor_seeing_the_vm_stop_gives_them_back(sessions, hosts, fake, host, flavor_vm, db):
    inventory(sessions, host, fn("0000:03:00.0", group=1), fn("0000:03:00.1", NVME, group=1),
              fn("0000:04:00.0", group=2))
    vm = flavor_vm("a1:2")
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    monitor = Monitor(sessions, hosts, poll_timeout=0.1, in_flight_grace=30, stale_after=120, retry_delay=0.05)
    monitor.run_once(host)
    fake.call("VM.destroy", {"vmId": vm.id})     # the guest powered itself off
    monitor.run_once(host)
    assert db.vm(vm.id).status == "down"
    assert statuses(sessions, host) == {a: ("available", None) for a in ("0000:03:00.0", "0000:03:00.1",
                                                                          "0000:04:00.0")}
    assert pci_rows(sessions, vm) == []


def test_a_failed_vm_create_gives_them_back(sessions, hosts, fake, host, flavor_vm, db):
    inventory(sessions, host, fn("0000:03:00.0", group=1), fn("0000:03:00.1", NVME, group=1),
              fn("0000:04:00.0", group=2))
    vm = flavor_vm("a1:2")
    fake.fail("VM.create", "createErr")
    with pytest.raises(HostCallFailed):
        run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    assert (db.vm(vm.id).status, db.vm(vm.id).run_on_host) == ("down", None)
    assert {st for st, _ in statuses(sessions, host).values()} == {"available"}
    assert pci_rows(sessions, vm) == []
    (create,) = fake.sent("VM.create")
    assert len([d for d in create["params"]["devices"] if d["type"] == "hostdev"]) == 2
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id))       # the next start finds them free
    assert len(pci_rows(sessions, vm)) == 2


def test_deleting_a_vm_that_holds_them_gives_them_back(sessions, hosts, fake, host, flavor_vm):
    inventory(sessions, host, fn("0000:03:00.0", group=1), fn("0000:03:00.1", NVME, group=1))
    vm = flavor_vm("a1:1")
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    stop_vm.execute(sessions, hosts, stop_vm.Params(vm.id))
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    with sessions.begin() as s:         # the VM's row goes while it holds them (remove_vm wants it down)
        assert vms.delete(s, vm.id)
    assert {st for st, _ in statuses(sessions, host).values()} == {"available"}


def test_no_host_with_them_is_refused_naming_what_is_missing(sessions, hosts, fake, host, host2, flavor_vm,
                                                              make_vm, db):
    inventory(sessions, host, fn("0000:03:00.0"), fn("0000:04:00.0", allowed=False))
    inventory(sessions, host2, fn("0000:03:00.0", CX5))
    vm = flavor_vm("a1:2,c1:2")
    err = refused(sessions, db, fake, "VM_START", lambda: run_vm.execute(sessions, hosts, run_vm.Params(vm.id)),
                  "NO_HOST_WITH_PCI_DEVICES")
    assert err.reasons[0].vars["missing"] == ["2 × a1 (1 free)", "2 × c1 (1 free)"]
    assert "missing 2 × a1 (1 free), 2 × c1 (1 free)" in err.reasons[0].message
    assert hosts["host2"].sent("VM.create") == []
    assert statuses(sessions, host) == {"0000:03:00.0": ("available", None), "0000:04:00.0": ("unavailable", None)}


def test_requests_met_on_no_single_host_are_refused(sessions, hosts, fake, host, host2, flavor_vm, db):
    inventory(sessions, host, fn("0000:03:00.0"), fn("0000:04:00.0"))
    inventory(sessions, host2, fn("0000:03:00.0", CX5))
    vm = flavor_vm("a1:2,c1:1")
    err = refused(sessions, db, fake, "VM_START", lambda: run_vm.execute(sessions, hosts, run_vm.Params(vm.id)),
                  "NO_HOST_WITH_PCI_DEVICES")
    assert err.reasons[0].vars["missing"] == [] and "on one host" in err.reasons[0].message


def test_an_alias_no_longer_configured_is_refused(sessions, hosts, fake, host, flavor_vm, db):
    inventory(sessions, host, fn("0000:03:00.0"))
    vm = flavor_vm("a1:1")
    configure(sessions)                 # the engine restarted without aliases
    err = refused(sessions, db, fake, "VM_START", lambda: run_vm.execute(sessions, hosts, run_vm.Params(vm.id)),
                  "PCI_ALIAS_UNKNOWN")
    assert err.reasons[0].vars["alias"] == "a1"


def test_the_host_asked_for_must_have_them(sessions, hosts, fake, host, host2, flavor_vm, db):
    inventory(sessions, host2, fn("0000:03:00.0"))
    vm = flavor_vm("a1:1")
    err = refused(sessions, db, fake, "VM_START",
                  lambda: run_vm.execute(sessions, hosts, run_vm.Params(vm.id, host_id=host.id)),
                  "NO_HOST_WITH_PCI_DEVICES")
    assert err.reasons[0].vars["missing"] == ["1 × a1 (0 free)"]


def test_a_device_lost_to_another_request_sends_the_vm_to_the_next_host(sessions, hosts, host, host2, flavor_vm,
                                                                         make_vm, db, monkeypatch):
    first = inventory(sessions, host, fn("0000:03:00.0"), fn("0000:04:00.0"))
    second = inventory(sessions, host2, fn("0000:03:00.0"), fn("0000:04:00.0"))
    make_vm(status="up", host=host2)            # host1 is tried first
    other = make_vm()
    real = pci_devices.free_on_host
    raced_once = []

    def raced(s, host_id, wants, pairs):        # another request claims one right after they were read
        rows = real(s, host_id, wants, pairs)
        if host_id == host.id and not raced_once:
            raced_once.append(host_devices.claim(s, first["0000:04:00.0"], other.id))
        return rows

    monkeypatch.setattr(pci_devices, "free_on_host", raced)
    vm = flavor_vm("a1:2")
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    assert db.vm(vm.id).run_on_host == host2.id
    assert statuses(sessions, host2) == {a: ("allocated", vm.id) for a in second}
    assert statuses(sessions, host) == {"0000:03:00.0": ("available", None), "0000:04:00.0": ("claimed", other.id)}
    assert raced_once == [True]


# ---- IOMMU groups through pci_rules.take ----------------------------------------------------------

PAIRS = by_name(ALIASES)


def take(sessions, vm, host, text="a1:1"):
    name, _, count = text.partition(":")
    with sessions.begin() as s:
        rows = pci_rules.take(s, vms.get(s, vm.id), host.id, [PciRequest(name, int(count or 1))], PAIRS,
                              origin="flavor", plugged=True, allocate=True)
        return None if rows is None else [r.host_device_id for r in rows]


def test_a_device_whose_group_another_vm_holds_is_not_given(sessions, host, make_vm):
    ids = inventory(sessions, host, fn("0000:03:00.0", group=7), fn("0000:03:00.1", group=7))
    first, second = make_vm(), make_vm()
    assert take(sessions, first, host) == [ids["0000:03:00.0"]]
    assert take(sessions, second, host) is None
    assert statuses(sessions, host)["0000:03:00.1"] == ("unavailable", None)
    assert double_allocations(sessions) == []


def test_a_free_sibling_the_db_still_calls_available_is_not_given(sessions, host, make_vm):
    """The placement counts available rows; the claim checks the group itself, whatever the status
    says (an inventory refresh may have written it)."""
    ids = inventory(sessions, host, fn("0000:03:00.0", group=7), fn("0000:03:00.1", group=7))
    first, second = make_vm(), make_vm()
    assert take(sessions, first, host) == [ids["0000:03:00.0"]]
    with sessions.begin() as s:
        host_devices.get(s, ids["0000:03:00.1"]).status = "available"
    assert take(sessions, second, host) is None
    with sessions() as s:
        reasons = pci_rules.shortage(s, "host1", host.id, [PciRequest("a1", 1)], PAIRS)
    assert codes(reasons) == ["IOMMU_GROUP_BUSY"]
    assert reasons[0].vars["group"] == 7 and len(reasons[0].vars["blockers"]) == 1


def test_siblings_come_back_when_the_vm_lets_go(sessions, hosts, fake, host, flavor_vm, make_vm):
    inventory(sessions, host, fn("0000:03:00.0", group=7), fn("0000:03:00.1", group=7))
    vm = flavor_vm("a1:1")
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    assert take(sessions, make_vm(), host) is None
    stop_vm.execute(sessions, hosts, stop_vm.Params(vm.id))
    assert take(sessions, make_vm(), host) is not None


def test_a_bridge_in_the_group_does_not_block(sessions, host, make_vm):
    ids = inventory(sessions, host, bridge("0000:00:1c.0", group=7), fn("0000:03:00.0", group=7))
    assert take(sessions, make_vm(), host) == [ids["0000:03:00.0"]]


def test_a_member_the_host_keeps_blocks(sessions, host, make_vm):
    inventory(sessions, host, fn("0000:03:00.0", NVME, group=7, allowed=False, driver="nvme"),
              fn("0000:03:00.1", group=7))
    assert take(sessions, make_vm(), host) is None


def test_one_request_may_take_a_whole_group(sessions, host, make_vm):
    ids = inventory(sessions, host, fn("0000:03:00.0", group=7), fn("0000:03:00.1", group=7))
    assert sorted(take(sessions, make_vm(), host, "a1:2")) == sorted(ids.values())


def test_flavor_pci_wants_nothing_without_a_flavor_or_a_pci_spec(sessions, make_vm, flavor_vm):
    with sessions() as s:
        assert flavor_pci.wants(s, make_vm()) == ("", ())
        vm = flavor_vm("a1:2")
        assert flavor_pci.wants(s, vm)[1] == (PciRequest("a1", 2),)


# ---- the shortlist ---------------------------------------------------------------------------------

def test_the_placement_reads_the_best_hosts_and_all_of_them_when_too_few_of_those_have_the_networks(
        sessions, make_host, make_vm, flavor_vm):
    bare = {"networks": {"ovirtmgmt": {}}, "bridges": {"ovirtmgmt": {}}}
    storage = {"networks": {"ovirtmgmt": {}}, "bridges": {"ovirtmgmt": {}, "br-storage": {}}}
    hosts = [make_host(f"h{i}", capabilities=storage if i >= 5 else bare) for i in range(8)]
    for i, h in enumerate(hosts):
        inventory(sessions, h, fn("0000:03:00.0"))
        for _ in range(i):          # h0 the least loaded, h7 the most
            make_vm(status="up", host=h)
    vm = flavor_vm("a1:1")
    with sessions() as s:
        def names(**kw):
            place = flavor_pci.placement(s, vm, cluster_name="Default", **kw)
            return [h.name for h in place.hosts]
        assert names(networks=[], limit=6) == ["h0", "h1", "h2", "h3", "h4", "h5"]
        assert names(networks=[]) == [f"h{i}" for i in range(8)]       # fewer than the shortlist
        assert names(networks=["br-storage"], limit=6) == ["h5", "h6", "h7"]     # h5 only among the best 6
        assert names(networks=["br-storage"], limit=None) == ["h5", "h6", "h7"]


def test_a_flavor_with_usb_and_pci_devices_finds_a_host_with_both_beyond_the_shortlist(
        sessions, hosts, make_host, make_vm, flavor_vm, monkeypatch, db):
    monkeypatch.setattr(flavor_pci, "SHORTLIST", flavor_pci.TRIES)
    pci_hosts = [make_host(f"p{i}") for i in range(flavor_pci.TRIES + 1)]
    for i, h in enumerate(pci_hosts):
        inventory(sessions, h, fn("0000:03:00.0"))
        for _ in range(i):          # the last is the most loaded: beyond the shortlist
            make_vm(status="up", host=h)
    last = pci_hosts[-1]
    with sessions.begin() as s:
        host_devices.sync(s, last.id, [{"name": "usb_1_2", "capability": "usb_device", "vendorId": "0781",
                                         "productId": "5567", "portPath": "1-2", "allowed": True}],
                          capabilities=("usb_device",))
    vm = flavor_vm("a1:1")
    with sessions.begin() as s:
        flavor = flavors.get(s, vms.get(s, vm.id).flavor)
        flavor.extra_specs = {**flavor.extra_specs,
                              "usb_devices": '[{"vendor_id": "0781", "product_id": "5567", "count": 1}]'}
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    assert db.vm(vm.id).run_on_host == last.id
    assert statuses(sessions, last) == {"0000:03:00.0": ("allocated", vm.id)}


def test_starting_a_vm_that_runs_is_refused_as_not_down(sessions, hosts, fake, host, flavor_vm, db):
    """Its devices are its own while it runs: the refusal is that it is not down, not a lack of devices."""
    inventory(sessions, host, fn("0000:03:00.0"), fn("0000:04:00.0"))
    vm = flavor_vm("a1:2")
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    fake.calls.clear()
    refused(sessions, db, fake, "VM_START", lambda: run_vm.execute(sessions, hosts, run_vm.Params(vm.id)),
            "VM_NOT_DOWN")
