"""Claim races of PCI devices by alias (issue 11, item 9): 100 concurrent requests, each for its own
VM, for 10 devices -- exactly 10 win, none is given twice, and an IOMMU group never goes to two VMs.
On SQLite and, with PLUGBOARD_TEST_DB_URL, on PostgreSQL; the figures are printed (pytest -s)."""
from __future__ import annotations

import time
from collections import Counter

import pytest

from engine.commands import pci_rules, run_vm
from engine.dao import devices, vms as vms_dao
from engine.dao.models import Flavor, Vm
from engine.devices import claims
from engine.errors import EngineError, ValidationFailed
from engine.pci_aliases import PciRequest, by_name
from tests.unit.engine.pci import ALIASES, E1000E, I350, configure, double_allocations, fn, inventory, statuses
from tests.unit.engine.race import race

REQUESTS = 100
PAIRS = by_name(ALIASES)


@pytest.fixture
def racers(sessions, make_vm):
    """REQUESTS stopped VMs of one flavor asking for `spec`."""
    def make(spec: str) -> list[Vm]:
        configure(sessions, *ALIASES)
        flavor = Flavor(name="pci-race", memory_mb=256, vcpus=1, extra_specs={"pci_passthrough:alias": spec})
        with sessions.begin() as s:
            s.add(flavor)
        return [make_vm(f"racer{i}", flavor=flavor.id) for i in range(REQUESTS)]
    return make


def report(what: str, sessions, results: list, seconds: float) -> tuple[int, Counter, list]:
    """Print the race's figures; returns the winners, the refusals by reason code, and what went
    wrong (errors other than refusals, then double allocations). A take that lost returns None."""
    won = sum(1 for r in results if r is not None and not isinstance(r, BaseException))
    lost = sum(1 for r in results if r is None)
    refusals = Counter(r.reasons[0].code if r.reasons else r.code for r in results if isinstance(r, EngineError))
    errors = [r for r in results if isinstance(r, BaseException) and not isinstance(r, EngineError)]
    doubles = double_allocations(sessions)
    with sessions() as s:
        dialect = s.get_bind().dialect.name
    print(f"\n{what} on {dialect}: {len(results)} requests: {won} won, {lost + sum(refusals.values())} lost "
          f"({lost} none free, refused {dict(refusals)}), {len(errors)} errors, {len(doubles)} double allocations, "
          f"{seconds:.2f} s")
    for line in [f"first error: {errors[0]!r}"[:300]] if errors else []:
        print(line)
    return won, refusals, errors + doubles


def timed_race(attempt) -> tuple[list, float]:
    start = time.perf_counter()
    results = race(REQUESTS, attempt)
    return results, time.perf_counter() - start


def test_100_starts_for_10_devices_start_exactly_10_vms(sessions, race_sessions, hosts, host, racers):
    inventory(sessions, host, *(fn(f"0000:{3 + i:02x}:00.0", group=20 + i) for i in range(10)))
    vms = racers("a1:1")
    results, seconds = timed_race(lambda i: run_vm.execute(race_sessions, hosts, run_vm.Params(vms[i].id)))
    won, refusals, wrong = report("RunVm, 'a1:1' each, 10 devices", sessions, results, seconds)
    assert (won, wrong) == (10, [])
    assert set(refusals) <= {"NO_HOST_WITH_PCI_DEVICES"} and sum(refusals.values()) == REQUESTS - 10
    assert {str(r.reasons[0].vars["missing"]) for r in results if isinstance(r, EngineError)} == \
        {"['1 × a1 (0 free)']"}         # refused at the canDo or after the claim found them taken: alike
    with sessions() as s:
        up = [v.id for v in vms if vms_dao.get(s, v.id).status == "up"]
    assert sorted(vm for _, vm in statuses(sessions, host).values()) == sorted(up)
    assert len(hosts["host1"].sent("VM.create")) == 10


def take(race_sessions, vm: Vm, host_id: str, text: str):
    name, _, count = text.partition(":")
    with race_sessions.begin() as s:
        rows = pci_rules.take(s, vms_dao.get(s, vm.id), host_id, [PciRequest(name, int(count))], PAIRS,
                              origin="attachment", plugged=False, allocate=False)
        return None if rows is None else [r.host_device_id for r in rows]


def test_100_takes_for_10_devices_give_exactly_10(sessions, race_sessions, host, racers):
    inventory(sessions, host, *(fn(f"0000:{3 + i:02x}:00.0", group=20 + i) for i in range(10)))
    vms = racers("a1:1")
    results, seconds = timed_race(lambda i: take(race_sessions, vms[i], host.id, "a1:1"))
    won, _, wrong = report("pci_rules.take, 'a1:1' each, 10 devices", sessions, results, seconds)
    assert (won, wrong) == (10, [])
    assert {st for st, _ in statuses(sessions, host).values()} == {"claimed"}


def test_100_takes_of_2_for_10_devices_give_exactly_5(sessions, race_sessions, host, racers):
    inventory(sessions, host, *(fn(f"0000:{3 + i:02x}:00.0", group=20 + i) for i in range(10)))
    vms = racers("a1:2")
    results, seconds = timed_race(lambda i: take(race_sessions, vms[i], host.id, "a1:2"))
    won, _, wrong = report("pci_rules.take, 'a1:2' each, 10 devices", sessions, results, seconds)
    assert (won, wrong) == (5, [])
    assert Counter(vm for _, vm in statuses(sessions, host).values()).most_common()[0][1] == 2


def test_100_takes_for_10_devices_in_5_iommu_groups_give_exactly_5(sessions, race_sessions, host, racers):
    """Two functions per group: a group goes to one VM whole, so 5 requests win."""
    inventory(sessions, host, *(fn(f"0000:{3 + i // 2:02x}:00.{i % 2}", group=20 + i // 2) for i in range(10)))
    vms = racers("a1:1")
    results, seconds = timed_race(lambda i: take(race_sessions, vms[i], host.id, "a1:1"))
    won, _, wrong = report("pci_rules.take, 'a1:1' each, 10 devices in 5 IOMMU groups", sessions, results, seconds)
    assert (won, wrong) == (5, [])
    assert Counter(st for st, _ in statuses(sessions, host).values()) == {"claimed": 5, "unavailable": 5}


def test_requests_for_two_functions_of_one_group_never_split_it(sessions, race_sessions, host, racers):
    """10 groups of two functions of different products, asked for by two aliases in turn: each group
    goes to one VM (the other function becomes unavailable), none to two."""
    inventory(sessions, host, *(fn(f"0000:{3 + g:02x}:00.{f}", (E1000E, I350)[f], group=20 + g)
                                for g in range(10) for f in (0, 1)))
    vms = racers("a1:1")
    pairs = {"e": [E1000E], "i": [I350]}

    def take_one(i: int):
        with race_sessions.begin() as s:
            rows = pci_rules.take(s, vms_dao.get(s, vms[i].id), host.id, [PciRequest("ei"[i % 2], 1)], pairs,
                                  origin="attachment", plugged=False, allocate=False)
            return None if rows is None else [r.host_device_id for r in rows]

    results, seconds = timed_race(take_one)
    won, _, wrong = report("pci_rules.take, 'e:1' or 'i:1', 10 IOMMU groups of an e1000e and an I350", sessions,
                           results, seconds)
    assert (won, wrong) == (10, [])
    assert Counter(st for st, _ in statuses(sessions, host).values()) == {"claimed": 10, "unavailable": 10}


def test_claims_of_two_functions_of_one_group_by_two_vms_give_the_group_to_one(sessions, race_sessions, host,
                                                                                 make_vm):
    """The claim hook of a hostdev row (engine.devices.claims.claim, what a raw assignment by device
    id plugs through): 20 VMs each claim their own function, two per group, all at once -- one VM
    per group wins, the other is told the group is busy."""
    ids = inventory(sessions, host, *(fn(f"0000:{3 + g:02x}:00.{f}", group=20 + g) for g in range(10) for f in (0, 1)))
    rows = []
    claimers = [make_vm(f"claimer{i}") for i in range(len(ids))]
    with sessions.begin() as s:
        for vm, dev_id in zip(claimers, ids.values()):
            rows.append(devices.add(s, vm.id, type="hostdev", device="pci", is_plugged=False, host_device_id=dev_id,
                                    spec_params={"managed": True}).id)

    def claim(i: int):
        with race_sessions.begin() as s:
            found = claims.claim(s, devices.get(s, rows[i]))
            if found:
                raise ValidationFailed("refused", reasons=found)
            return rows[i]

    results, seconds = timed_race(lambda i: claim(i % len(rows)) if i < len(rows) else None)
    won, refusals, wrong = report("claims.claim, 20 VMs, one function each, 10 IOMMU groups of two", sessions,
                                  results[:len(rows)], seconds)
    assert (won, wrong) == (10, [])
    assert set(refusals) <= {"IOMMU_GROUP_BUSY", "HOST_DEVICE_BUSY"} and sum(refusals.values()) == 10
    assert Counter(st for st, _ in statuses(sessions, host).values()) == {"claimed": 10, "unavailable": 10}
