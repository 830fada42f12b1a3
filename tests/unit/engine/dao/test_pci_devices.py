"""engine.dao.pci_devices: placement by alias in one grouped query (which hosts, in which order, what a
refusal counts) and IOMMU groups (blockers, siblings unavailable while a member is held, available
again when it is released or its VM deleted; bridges never block)."""
from __future__ import annotations

import pytest

from engine.dao import host_devices, pci_devices, vms
from engine.dao.models import HostDevice
from engine.pci_aliases import PciRequest, by_name
from engine.vocab import RUNNING_STATUSES
from tests.unit.engine.pci import ALIASES, CX5, I350, NVME, bridge, fn, inventory, statuses

PAIRS = by_name(ALIASES)


def want(text: str) -> list[PciRequest]:
    out = []
    for part in text.split(","):
        name, _, count = part.partition(":")
        out.append(PciRequest(name, int(count or 1)))
    return out


def placed(sessions, cluster_id: str, text: str, **kw) -> list[str]:
    with sessions() as s:
        return [h.name for h in pci_devices.hosts_with_free(s, want(text), PAIRS, cluster_id=cluster_id,
                                                            host_status="up", running_statuses=RUNNING_STATUSES,
                                                            **kw)]


@pytest.fixture
def cluster(make_cluster):
    return make_cluster("c1")


@pytest.fixture
def host(make_host, cluster):
    return make_host("h1", cluster=cluster)


# ---- placement -----------------------------------------------------------------------------------

def test_only_up_hosts_of_the_cluster_with_enough_free_whitelisted_present_devices(sessions, cluster, make_cluster,
                                                                                    make_host, make_vm):
    two = [fn("0000:03:00.0"), fn("0000:04:00.0")]
    inventory(sessions, make_host("ok", cluster=cluster), *two)
    inventory(sessions, make_host("other-cluster", cluster=make_cluster("c2")), *two)
    inventory(sessions, make_host("unreachable", cluster=cluster, status="unreachable"), *two)
    inventory(sessions, make_host("maintenance", cluster=cluster, status="maintenance"), *two)
    inventory(sessions, make_host("one", cluster=cluster), two[0], fn("0000:04:00.0", NVME))
    inventory(sessions, make_host("not-whitelisted", cluster=cluster), two[0], fn("0000:04:00.0", allowed=False))
    gone = make_host("one-gone", cluster=cluster)
    inventory(sessions, gone, *two)
    inventory(sessions, gone, two[0])                       # the other left the host: removed
    held = make_host("one-held", cluster=cluster)
    ids = inventory(sessions, held, *two)
    with sessions.begin() as s:
        assert host_devices.claim(s, ids["0000:04:00.0"], make_vm().id)
    assert placed(sessions, cluster.id, "a1:2") == ["ok"]
    assert placed(sessions, cluster.id, "a1:1") == ["not-whitelisted", "ok", "one", "one-gone", "one-held"]
    assert placed(sessions, cluster.id, "a1:3") == []
    assert placed(sessions, cluster.id, "c1:1") == []


def test_a_device_two_aliases_could_take_is_counted_once(sessions, cluster, make_host):
    inventory(sessions, make_host("one-i350", cluster=cluster), fn("0000:03:00.0", I350))
    inventory(sessions, make_host("e1000e-and-i350", cluster=cluster), fn("0000:03:00.0"), fn("0000:04:00.0", I350))
    inventory(sessions, make_host("two-i350", cluster=cluster), fn("0000:03:00.0", I350), fn("0000:04:00.0", I350))
    inventory(sessions, make_host("two-e1000e", cluster=cluster), fn("0000:03:00.0"), fn("0000:04:00.0"))
    # a1 takes an e1000e or an I350, b1 an I350 only: one I350 cannot serve both.
    assert placed(sessions, cluster.id, "a1:1,b1:1") == ["e1000e-and-i350", "two-i350"]
    assert placed(sessions, cluster.id, "a1:1") == ["e1000e-and-i350", "one-i350", "two-e1000e", "two-i350"]
    assert placed(sessions, cluster.id, "b1:2") == ["two-i350"]


def test_every_alias_is_counted(sessions, cluster, make_host):
    inventory(sessions, make_host("nics", cluster=cluster), fn("0000:03:00.0"), fn("0000:04:00.0"))
    inventory(sessions, make_host("nics-and-cx5", cluster=cluster), fn("0000:03:00.0"), fn("0000:04:00.0"),
              fn("0000:05:00.0", CX5))
    assert placed(sessions, cluster.id, "a1:2,c1:1") == ["nics-and-cx5"]
    assert placed(sessions, cluster.id, "a1:2,c1:2") == []


def test_least_loaded_first_then_by_name(sessions, cluster, make_host, make_vm):
    hosts = {name: make_host(name, cluster=cluster) for name in ("b", "a", "c")}
    for h in hosts.values():
        inventory(sessions, h, fn("0000:03:00.0"))
    make_vm(status="up", host=hosts["a"], cluster=cluster)
    make_vm(status="up", host=hosts["a"], cluster=cluster)
    make_vm(status="paused", host=hosts["b"], cluster=cluster)
    make_vm(status="down", host=hosts["c"], cluster=cluster)      # not running: no load
    assert placed(sessions, cluster.id, "a1:1") == ["c", "b", "a"]
    assert placed(sessions, cluster.id, "a1:1", limit=2) == ["c", "b"]
    assert placed(sessions, cluster.id, "a1:1", host_id=hosts["a"].id) == ["a"]


def test_an_alias_without_ids_or_no_request_finds_nothing(sessions, cluster, host):
    inventory(sessions, host, fn("0000:03:00.0"))
    with sessions() as s:
        assert pci_devices.hosts_with_free(s, [], PAIRS, cluster_id=cluster.id, host_status="up",
                                           running_statuses=RUNNING_STATUSES) == []
        assert pci_devices.hosts_with_free(s, want("zz:1"), PAIRS, cluster_id=cluster.id, host_status="up",
                                           running_statuses=RUNNING_STATUSES) == []


def test_free_counts_gives_the_most_free_on_one_host(sessions, cluster, make_host):
    one = make_host("one", cluster=cluster)
    three = make_host("three", cluster=cluster)
    inventory(sessions, one, fn("0000:03:00.0"), fn("0000:04:00.0", CX5))
    inventory(sessions, three, fn("0000:03:00.0"), fn("0000:04:00.0"), fn("0000:05:00.0", I350))
    with sessions() as s:
        assert pci_devices.free_counts(s, want("a1:4,b1:1,c1:2"), PAIRS, [one.id, three.id]) == [3, 1, 1]
        assert pci_devices.free_counts(s, want("a1:4"), PAIRS, []) == [0]


def test_free_on_host_lists_what_the_aliases_name_by_address(sessions, host):
    inventory(sessions, host, fn("0000:05:00.0", I350), fn("0000:03:00.0"), fn("0000:04:00.0", NVME),
              fn("0000:06:00.0", allowed=False))
    with sessions() as s:
        assert [d.pci_address for d in pci_devices.free_on_host(s, host.id, want("a1:1"), PAIRS)] == \
            ["0000:03:00.0", "0000:05:00.0"]
        assert [d.pci_address for d in pci_devices.free_on_host(s, host.id, want("b1:1"), PAIRS)] == ["0000:05:00.0"]


# ---- IOMMU groups ----------------------------------------------------------------------------------

def get(s, ids, address) -> HostDevice:
    dev = host_devices.get(s, ids[address])
    assert dev is not None
    return dev


def test_a_held_member_blocks_its_group_and_its_siblings_become_unavailable(sessions, host, make_vm):
    ids = inventory(sessions, host, fn("0000:03:00.0", group=5), fn("0000:03:00.1", group=5),
                    fn("0000:04:00.0", group=6))
    first, second = make_vm(), make_vm()
    with sessions.begin() as s:
        assert host_devices.claim(s, ids["0000:03:00.0"], first.id)
        assert pci_devices.settle_groups(s, host.id) == 1
    assert statuses(sessions, host) == {"0000:03:00.0": ("claimed", first.id), "0000:03:00.1": ("unavailable", None),
                                        "0000:04:00.0": ("available", None)}
    with sessions() as s:
        sibling = get(s, ids, "0000:03:00.1")
        assert [b.pci_address for b in pci_devices.group_blockers(s, sibling, second.id)] == ["0000:03:00.0"]
        assert pci_devices.group_blockers(s, sibling, first.id) == []        # its own VM's group
        assert [d.pci_address for d in pci_devices.free_on_host(s, host.id, want("a1:1"), PAIRS)] == ["0000:04:00.0"]
    assert placed(sessions, host.cluster_id, "a1:2") == []
    with sessions.begin() as s:
        assert host_devices.release(s, ids["0000:03:00.0"], first.id)
        assert pci_devices.settle_groups(s, host.id, {5}) == 1
    assert {status for status, _ in statuses(sessions, host).values()} == {"available"}
    assert placed(sessions, host.cluster_id, "a1:3") == ["h1"]


def test_deleting_the_vm_frees_its_groups(sessions, host, make_vm):
    ids = inventory(sessions, host, fn("0000:03:00.0", group=5), fn("0000:03:00.1", group=5),
                    fn("0000:04:00.0", NVME, group=5))
    vm = make_vm()
    with sessions.begin() as s:
        assert host_devices.claim(s, ids["0000:03:00.0"], vm.id)
        assert host_devices.allocate(s, ids["0000:03:00.0"], vm.id)
        pci_devices.settle(s, pci_devices.held_groups(s, vm.id))
        assert pci_devices.held_groups(s, vm.id) == {(host.id, 5)}
    assert [st for st, _ in statuses(sessions, host).values()] == ["allocated", "unavailable", "unavailable"]
    with sessions.begin() as s:
        assert vms.delete(s, vm.id)
    assert statuses(sessions, host) == {a: ("available", None) for a in ids}


def test_bridges_never_block_a_group(sessions, host, make_vm):
    ids = inventory(sessions, host, bridge("0000:00:1c.0", group=5), fn("0000:03:00.0", group=5))
    with sessions() as s:
        assert pci_devices.group_blockers(s, get(s, ids, "0000:03:00.0"), make_vm().id) == []


def test_a_member_the_host_keeps_blocks_its_group(sessions, host, make_vm):
    """A member the whitelist does not allow stays with the host's driver: the group cannot go to a VM."""
    ids = inventory(sessions, host, fn("0000:03:00.0", group=5), fn("0000:03:00.1", NVME, group=5, allowed=False,
                                                                     driver="nvme"))
    with sessions() as s:
        assert [b.pci_address for b in pci_devices.group_blockers(s, get(s, ids, "0000:03:00.0"), make_vm().id)] == \
            ["0000:03:00.1"]


def test_members_the_same_request_takes_and_gone_members_do_not_block(sessions, host, make_vm):
    ids = inventory(sessions, host, fn("0000:03:00.0", group=5), fn("0000:03:00.1", group=5),
                    fn("0000:03:00.2", group=5))
    inventory(sessions, host, fn("0000:03:00.0", group=5), fn("0000:03:00.1", group=5))     # .2 is gone
    vm, other = make_vm(), make_vm()
    with sessions.begin() as s:
        assert host_devices.claim(s, ids["0000:03:00.1"], other.id)
    with sessions() as s:
        dev = get(s, ids, "0000:03:00.0")
        assert [b.pci_address for b in pci_devices.group_members(s, dev)] == ["0000:03:00.1"]
        assert [b.pci_address for b in pci_devices.group_blockers(s, dev, vm.id)] == ["0000:03:00.1"]
        assert pci_devices.group_blockers(s, dev, vm.id, taking=[ids["0000:03:00.1"]]) == []


def test_a_device_without_a_group_has_no_members(sessions, host, make_vm):
    ids = inventory(sessions, host, fn("0000:03:00.0"), fn("0000:03:00.1"))
    with sessions() as s:
        assert pci_devices.group_members(s, get(s, ids, "0000:03:00.0")) == []


def test_settle_leaves_held_and_whitelist_statuses_alone(sessions, host, make_vm):
    ids = inventory(sessions, host, fn("0000:03:00.0", group=5), fn("0000:03:00.1", group=5, allowed=False),
                    fn("0000:04:00.0", group=6, allowed=False))
    vm = make_vm()
    with sessions.begin() as s:
        assert host_devices.claim(s, ids["0000:03:00.0"], vm.id)
        pci_devices.settle_groups(s, host.id)
        pci_devices.settle_groups(s, host.id)
    assert statuses(sessions, host) == {"0000:03:00.0": ("claimed", vm.id), "0000:03:00.1": ("unavailable", None),
                                        "0000:04:00.0": ("unavailable", None)}
    with sessions.begin() as s:
        assert host_devices.release(s, ids["0000:03:00.0"], vm.id)
        pci_devices.settle_groups(s, host.id)
    assert statuses(sessions, host)["0000:03:00.1"] == ("unavailable", None)     # still not whitelisted
    assert statuses(sessions, host)["0000:03:00.0"] == ("available", None)


def test_settle_with_no_group_changes_nothing(sessions, host):
    inventory(sessions, host, fn("0000:03:00.0", group=5))
    with sessions.begin() as s:
        assert pci_devices.settle_groups(s, host.id, set()) == 0

