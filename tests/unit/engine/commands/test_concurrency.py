"""Commands racing each other, on SQLite and on PostgreSQL (PLUGBOARD_TEST_DB_URL): one unique value
is won by one request, every other request is refused with a 409 and its reason -- never an internal
error (an IntegrityError or a 500).

Sessions are made as production makes them: on SQLite with IMMEDIATE transactions (the write lock is
taken at BEGIN, so a canDo read and the write that follows are one step).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from sqlalchemy.exc import SQLAlchemyError

from engine.api.views import controller_view
from engine.app import create_app
from engine.commands import add_controller, add_nic, add_redirdev, plug_unplug_nic, plug_unplug_redirdev, run_vm
from engine.dao import devices, nics, vms
from engine.devices import pcie_ports
from engine.errors import EngineError
from tests.unit.engine.race import race
from tests.unit.engine.tokens import authenticated, issue_token

MAC = "56:6f:1a:00:42:42"


def refusals(results: list[Any]) -> list[EngineError]:
    """The failed attempts, after checking none of them is an internal error."""
    failed = [r for r in results if isinstance(r, BaseException)]
    internal = [r for r in failed if not isinstance(r, EngineError) or r.status >= 500]
    assert not internal, f"internal errors: {internal!r}"
    assert not any(isinstance(r, SQLAlchemyError) for r in failed)
    return failed  # type: ignore[return-value]


def reason_codes(err: EngineError) -> list[str]:
    return [r.code for r in err.reasons]


def nic_rows(sessions, vm_id: str) -> list[Any]:
    with sessions.begin() as s:
        return [(n.name, n.mac, n.claimed_mac, n.device.is_plugged, n.device.plug_state)
                for n in nics.list_for_vm(s, vm_id)]


# ---- NICs -----------------------------------------------------------------------------------------

def test_parallel_add_nic_with_one_mac_one_claims_it(race_sessions, hosts, fake, up_vm, db):
    results = race(20, lambda i: add_nic.execute(race_sessions, hosts, add_nic.Params(
        up_vm.id, f"eth{i}", "ovirtmgmt", mac=MAC)))
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = refusals(results)
    assert len(won) == 1 and len(lost) == 19
    for err in lost:
        assert err.status == 409 and "MAC_IN_USE" in reason_codes(err), err
    [row] = nic_rows(race_sessions, up_vm.id)
    assert row[1:] == (MAC, MAC, True, "stable")
    assert [p["nic"]["macAddr"] for p in fake.sent("VM.hotplugNic")] == [MAC]
    assert len(db.events(up_vm.id, code="NIC_ADD_REFUSED")) == 19


def test_parallel_add_nic_with_one_mac_over_rest_is_409_never_500(race_sessions, hosts, fake, up_vm):
    app = create_app({"sessions": race_sessions, "hosts": hosts, "TESTING": True})
    token = issue_token(race_sessions)

    def attempt(i: int):
        r = authenticated(app.test_client(), token).post(f"/api/vms/{up_vm.id}/nics",
                                   json={"name": f"eth{i}", "network": "ovirtmgmt", "mac": MAC})
        return r.status_code, r.get_json()

    results = race(20, attempt)
    assert not [r for r in results if isinstance(r, BaseException)], results
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * 19, results
    for status, body in results:
        if status == 409:
            assert "MAC_IN_USE" in [x["code"] for x in body["fault"]["reasons"]], body
    assert len(nic_rows(race_sessions, up_vm.id)) == 1


def test_parallel_add_nic_without_a_mac_gets_distinct_macs(race_sessions, hosts, fake, up_vm):
    results = race(20, lambda i: add_nic.execute(race_sessions, hosts, add_nic.Params(
        up_vm.id, f"eth{i}", "ovirtmgmt")))
    assert refusals(results) == []
    rows = nic_rows(race_sessions, up_vm.id)
    assert len(rows) == 20
    macs = [mac for _, mac, _, _, _ in rows]
    assert len(set(macs)) == 20
    assert all(claimed == mac and plugged and st == "stable" for _, mac, claimed, plugged, st in rows)
    assert sorted(p["nic"]["macAddr"] for p in fake.sent("VM.hotplugNic")) == sorted(macs)


@pytest.mark.parametrize("running", [False, True], ids=["down", "up"])
def test_parallel_add_nic_with_one_name_one_wins(race_sessions, hosts, fake, up_vm, down_vm, db, running):
    vm = up_vm if running else down_vm
    results = race(10, lambda i: add_nic.execute(race_sessions, hosts, add_nic.Params(
        vm.id, "eth0", "ovirtmgmt", mac=f"56:6f:1a:00:43:{i:02x}")))
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = refusals(results)
    assert len(won) == 1 and len(lost) == 9
    for err in lost:
        assert err.status == 409 and reason_codes(err) == ["NAME_IN_USE"], err
    [row] = nic_rows(race_sessions, vm.id)
    assert row[0] == "eth0" and row[3] is True
    assert len(fake.sent("VM.hotplugNic")) == (1 if running else 0)
    assert len(db.events(vm.id, code="NIC_ADD_REFUSED")) == 9


def test_parallel_add_nic_with_one_name_over_rest_is_409(race_sessions, hosts, down_vm):
    app = create_app({"sessions": race_sessions, "hosts": hosts, "TESTING": True})
    token = issue_token(race_sessions)

    def attempt(i: int):
        r = authenticated(app.test_client(), token).post(f"/api/vms/{down_vm.id}/nics",
                                                         json={"name": "eth0", "network": "ovirtmgmt"})
        return r.status_code, r.get_json()

    results = race(10, attempt)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sorted(status for status, _ in results) == [201] + [409] * 9, results
    for status, body in results:
        if status == 409:
            assert [x["code"] for x in body["fault"]["reasons"]] == ["NAME_IN_USE"], body
    assert len(nic_rows(race_sessions, down_vm.id)) == 1


# ---- USB controllers ------------------------------------------------------------------------------

def test_parallel_add_controller_with_one_index_one_row(race_sessions, hosts, fake, down_vm, db):
    results = race(10, lambda i: add_controller.execute(race_sessions, hosts, add_controller.Params(
        down_vm.id, "qemu-xhci", index=3)))
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = refusals(results)
    assert len(won) == 1 and len(lost) == 9
    for err in lost:
        assert err.status == 409 and reason_codes(err) == ["CONTROLLER_INDEX_IN_USE"], err
    with race_sessions.begin() as s:
        views = [controller_view(d) for d in devices.list_for_vm(s, down_vm.id, type="controller")]
    assert [(v["id"], v["index"]) for v in views] == [(won[0].id, 3)]
    assert len(db.events(down_vm.id, code="CONTROLLER_ADD_REFUSED")) == 9


def test_parallel_add_controller_without_index_gets_distinct_indexes(race_sessions, hosts, down_vm):
    results = race(10, lambda i: add_controller.execute(race_sessions, hosts, add_controller.Params(
        down_vm.id, "ehci")))
    assert refusals(results) == []
    with race_sessions.begin() as s:
        indexes = sorted(controller_view(d)["index"] for d in devices.list_for_vm(s, down_vm.id, type="controller"))
    assert indexes == list(range(10))


# ---- USB ports ------------------------------------------------------------------------------------

@pytest.mark.parametrize("running", [False, True], ids=["down", "up"])
def test_parallel_redirdev_activations_never_take_more_ports_than_there_are(race_sessions, sessions, hosts, fake,
                                                                             make_vm, host, db, running):
    """pc's default controller has two ports; one is taken. Of five deactivated redirection devices
    activated at once, exactly one gets the last port."""
    vm = make_vm(status="up" if running else "down", host=host if running else None, graphics="spice")
    if running:
        fake.add_domain(vm.id, vm.name)
    add_redirdev.execute(sessions, hosts, add_redirdev.Params(vm.id))
    spare = [add_redirdev.execute(sessions, hosts, add_redirdev.Params(vm.id, active=False)).id for _ in range(5)]
    results = race(5, lambda i: plug_unplug_redirdev.execute(race_sessions, hosts, plug_unplug_redirdev.Params(
        vm.id, spare[i], True)))
    lost = refusals(results)
    assert len(lost) == 4, results
    for err in lost:
        assert err.status == 409 and reason_codes(err) == ["NO_FREE_USB_PORT"], err
    with race_sessions.begin() as s:
        plugged = [d for d in devices.list_for_vm(s, vm.id, type="redirdev") if d.is_plugged]
    assert len(plugged) == 2


def test_parallel_redirdev_adds_never_take_more_ports_than_there_are(race_sessions, hosts, make_vm, db):
    vm = make_vm(status="down", graphics="spice")
    results = race(6, lambda i: add_redirdev.execute(race_sessions, hosts, add_redirdev.Params(vm.id)))
    lost = refusals(results)
    assert len(lost) == 4
    assert all(reason_codes(err) == ["NO_FREE_USB_PORT"] for err in lost)
    with race_sessions.begin() as s:
        assert len(devices.list_for_vm(s, vm.id, type="redirdev")) == 2


# ---- PCIe root ports ------------------------------------------------------------------------------

def overtaken(module: Any, name: str, other: Callable[[], Any], command: Callable[[], Any]) -> list[Any]:
    """Run `command`, whose canDo is `module.name`, with `other` run in a thread once that canDo has
    decided, waited for at most 0.5 s: the other command goes between this one's checks and its write,
    unless this one holds the VM (then it finishes after). The results (or exceptions) of both."""
    real, results, thread = getattr(module, name), [], []

    def attempt(call: Callable[[], Any]) -> None:
        try:
            results.append(call())
        except Exception as exc:  # asserted on by the caller
            results.append(exc)

    def checking(*args: Any, **kw: Any) -> Any:
        found = real(*args, **kw)
        if not thread:
            thread.append(threading.Thread(target=attempt, args=(other,)))
            thread[0].start()
            thread[0].join(0.5)
        return found
    with mock.patch.object(module, name, checking):
        attempt(command)
        thread[0].join(10)
    return results


def q35_with_one_free_port(sessions, hosts, fake, host, make_vm, make_nic) -> tuple[Any, list[Any]]:
    vm = make_vm(machine="q35", boot={"pciePorts": 1})
    spare = [make_nic(vm, f"eth{i}", network="br0", is_plugged=False) for i in range(2)]
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    return vm, spare


def ports_taken(sessions, vm_id: str) -> tuple[int | None, list[str]]:
    with sessions() as s:
        vm = vms.get(s, vm_id)
        return pcie_ports.free(vm), sorted(d.id for d in vm.devices if pcie_ports.on_wire(d))


def one_won_the_last_port(results: list[Any], sessions, fake, vm_id: str) -> None:
    """Of the two, one was refused for want of a port; one NIC has the port; one hot-plug was sent."""
    lost = refusals(results)
    assert len(lost) == 1 and len(results) == 2, results
    assert lost[0].status == 409 and reason_codes(lost[0]) == ["NO_FREE_PCIE_PORT"], lost[0]
    free, on_wire = ports_taken(sessions, vm_id)
    assert free == 0 and len(on_wire) == 1
    assert len(fake.sent("VM.hotplugNic")) == 1


def test_a_plug_that_a_plug_overtakes_between_its_read_and_its_begin_is_decided_again(
        race_sessions, sessions, hosts, fake, host, make_vm, make_nic):
    """On PostgreSQL a plug reads the VM without locking it. Another plug that takes the last PCIe
    port in between moves the VM's version, so the first one's begin does not take place: it reads
    again, locked, and is refused. On SQLite the first one holds the database; the other, refused,
    comes after it. Either way one NIC has the port and one hot-plug is sent."""
    vm, (first, second) = q35_with_one_free_port(sessions, hosts, fake, host, make_vm, make_nic)
    one_won_the_last_port(overtaken(
        plug_unplug_nic, "check",
        lambda: plug_unplug_nic.execute(race_sessions, hosts, plug_unplug_nic.Params(vm.id, second.id, True)),
        lambda: plug_unplug_nic.execute(race_sessions, hosts, plug_unplug_nic.Params(vm.id, first.id, True))),
        sessions, fake, vm.id)


def test_a_live_nic_add_holds_the_vm_against_a_plug_of_the_last_port(race_sessions, sessions, hosts, fake, host,
                                                                     make_vm, make_nic):
    """Adding an active NIC to a running VM takes a PCIe port as a plug does: it locks the VM, so that a
    plug cannot take the last port between the add's count and its write (it did on PostgreSQL: both
    were sent to the host)."""
    vm, (spare, _) = q35_with_one_free_port(sessions, hosts, fake, host, make_vm, make_nic)
    one_won_the_last_port(overtaken(
        add_nic, "validate",
        lambda: plug_unplug_nic.execute(race_sessions, hosts, plug_unplug_nic.Params(vm.id, spare.id, True)),
        lambda: add_nic.execute(race_sessions, hosts, add_nic.Params(vm.id, "eth9", "br0"))),
        sessions, fake, vm.id)
