"""PCI devices by alias attached to and detached from VMs (seed 003's os-pci_attachments) through the
commands, against the contract fake host: live attach, all or nothing when the second plug fails,
stopped VMs' definitions, detach waiting for the guest, IOMMU groups, free PCIe ports, tenancy."""
from __future__ import annotations

from typing import Any

import pytest

from engine.auth import MEMBER, Principal
from engine.commands import pci_attach, pci_detach, pci_rules, run_vm
from engine.dao import host_devices, pci_aliases
from engine.errors import HostCallFailed, NotFound, ValidationFailed
from engine.monitor import Monitor
from engine.pci_aliases import Alias
from tests.unit.engine.commands.refusals import refused, rows
from tests.unit.engine.fakehost import error_code

E1000E = ("8086", "10d3")
AUDIO = ("8086", "a170")        # not whitelisted: the host keeps it


def fn(address: str, ids: tuple[str, str] = E1000E, *, group: int | None = None, allowed: bool = True,
       driver: str = "e1000e") -> dict[str, Any]:
    """A PCI function as the agent reports it."""
    domain, bus, rest = address.split(":")
    slot, function = rest.split(".")
    return {"name": f"pci_{domain}_{bus}_{slot}_{function}", "capability": "pci", "vendorId": ids[0],
            "productId": ids[1], "pciAddress": address, "iommuGroup": group, "driver": driver, "allowed": allowed}


@pytest.fixture
def pci(sessions, fake, host):
    """The host's PCI inventory (in the database and on the fake host) and alias a1 = e1000e."""
    def make(*items: dict[str, Any]) -> dict[str, int]:
        fake.hostdevs[:] = list(items)
        with sessions.begin() as s:
            pci_aliases.replace_all(s, [Alias("a1", *E1000E)])
            host_devices.sync(s, host.id, list(items))
            return {d.pci_address: d.id for d in host_devices.list_for_host(s, host.id, capability="pci")}
    return make


def statuses(sessions, host) -> dict[str, tuple[str, str | None]]:
    with sessions() as s:
        return {d.pci_address: (d.status, d.vm_id) for d in host_devices.list_for_host(s, host.id, capability="pci")}


def attachments(sessions, vm) -> list[Any]:
    with sessions() as s:
        return [(d.id, d.host_device.pci_address, pci_rules.status(d), pci_rules.guest_address(d))
                for d in pci_rules.attachments(s, vm.id)]


def attach(sessions, hosts, vm, alias="a1", count=1, **kw):
    return pci_attach.execute(sessions, hosts, pci_attach.Params(vm.id, alias, count), **kw)


def detach(sessions, hosts, vm, attachment_id, **kw):
    return pci_detach.execute(sessions, hosts, pci_detach.Params(vm.id, attachment_id), **kw)


def fail_second_plug(fake) -> None:
    """The fake host plugs the first device and refuses the second."""
    plug = fake._VM_hotplugHostdev

    def first_only(params):
        if len(fake.sent("VM.hotplugHostdev")) > 1:
            raise fake._error(error_code("hostdevPlugFailed"), "internal error: unable to reset PCI device")
        return plug(params)
    fake._VM_hotplugHostdev = first_only


def monitor_reads(sessions, hosts, host) -> None:
    """One poll of the host's event journal, as the engine's monitor does."""
    Monitor(sessions, hosts, poll_timeout=0.1, in_flight_grace=30, stale_after=120, retry_delay=0.05).run_once(host)


# ---- live attach ---------------------------------------------------------------------------------

def test_live_attach_plugs_each_device_managed_and_allocates_it(sessions, hosts, fake, host, up_vm, pci, db):
    pci(fn("0000:02:00.0", group=1), fn("0000:02:00.1", group=2), fn("0000:03:00.0", group=3))
    out = attach(sessions, hosts, up_vm, count=2)
    assert out.created and len(out.ids) == 2 and out.id == out.ids[0]
    sent = [c["hostdev"] for c in fake.sent("VM.hotplugHostdev")]
    assert [h["source"] for h in sent] == [
        {"domain": "0x0000", "bus": "0x02", "slot": "0x00", "function": "0x0"},
        {"domain": "0x0000", "bus": "0x02", "slot": "0x00", "function": "0x1"}]
    assert all(h["device"] == "pci" and h["managed"] is True for h in sent)
    assert statuses(sessions, host) == {"0000:02:00.0": ("allocated", up_vm.id),
                                        "0000:02:00.1": ("allocated", up_vm.id), "0000:03:00.0": ("available", None)}
    listed = attachments(sessions, up_vm)
    assert [(a[1], a[2]) for a in listed] == [("0000:02:00.0", "attached"), ("0000:02:00.1", "attached")]
    assert [a[3] for a in listed] == ["0000:00:03.0", "0000:00:04.0"]      # the guest's, as the host reported
    codes = db.codes(up_vm.id)
    assert codes.count("HOSTDEV_PLUGGED") == 2 and codes[-1] == "PCI_ATTACHED"


def test_the_second_plug_failing_undoes_the_first(sessions, hosts, fake, host, up_vm, pci, db):
    pci(fn("0000:02:00.0", group=1), fn("0000:02:00.1", group=1), fn("0000:03:00.0", group=3))
    fail_second_plug(fake)
    with pytest.raises(HostCallFailed):
        attach(sessions, hosts, up_vm, count=2)
    assert fake.verbs().count("VM.hotplugHostdev") == 2 and fake.verbs().count("VM.hotunplugHostdev") == 1
    assert [d for d in fake.domain(up_vm.id).devices if d.get("type") == "hostdev"] == []    # host: nothing left
    assert attachments(sessions, up_vm) == []                                                 # database: nothing
    assert statuses(sessions, host) == {a: ("available", None) for a in ("0000:02:00.0", "0000:02:00.1",
                                                                         "0000:03:00.0")}
    with sessions() as s:
        failed = [d for d in host_devices.list_for_host(s, host.id) if d.last_error]
    assert [d.pci_address for d in failed] == ["0000:02:00.1"]      # the one the host refused says why
    codes = db.codes(up_vm.id)
    assert {"HOSTDEV_PLUGGED", "HOSTDEV_PLUG_FAILED", "HOSTDEV_UNPLUGGED"} <= set(codes)
    assert codes[-1] == "PCI_ATTACH_ROLLED_BACK"


def test_a_rollback_the_guest_is_slow_to_release_ends_when_the_host_reports_it(sessions, hosts, fake, host, up_vm,
                                                                                pci, db):
    pci(fn("0000:02:00.0", group=1), fn("0000:02:00.1", group=2))
    fail_second_plug(fake)
    fake.pending_unplug = True
    with pytest.raises(HostCallFailed):
        attach(sessions, hosts, up_vm, count=2)
    ((first_id, address, status, _),) = attachments(sessions, up_vm)
    assert (address, status) == ("0000:02:00.0", "detaching")
    assert statuses(sessions, host)["0000:02:00.1"] == ("available", None)
    fake.finish_unplug(up_vm.id, f"ua-{first_id}")
    monitor_reads(sessions, hosts, host)
    assert attachments(sessions, up_vm) == []
    assert statuses(sessions, host) == {"0000:02:00.0": ("available", None), "0000:02:00.1": ("available", None)}


# ---- stopped VMs ---------------------------------------------------------------------------------

def test_a_stopped_vms_attach_is_its_definition_and_goes_with_it_at_start(sessions, hosts, fake, host, make_host,
                                                                         down_vm, pci, db):
    make_host("empty")                          # an up host without the devices is not chosen
    pci(fn("0000:02:00.0", group=1))
    out = attach(sessions, hosts, down_vm)
    assert fake.calls == []
    assert statuses(sessions, host) == {"0000:02:00.0": ("allocated", down_vm.id)}
    assert attachments(sessions, down_vm) == [(out.id, "0000:02:00.0", "attached", None)]
    run_vm.execute(sessions, hosts, run_vm.Params(down_vm.id))      # pinned to the devices' host
    (create,) = fake.sent("VM.create")
    (sent,) = [d for d in create["params"]["devices"] if d["type"] == "hostdev"]
    assert sent["source"] == {"domain": "0x0000", "bus": "0x02", "slot": "0x00", "function": "0x0"}
    assert db.vm(down_vm.id).run_on_host == host.id
    assert attachments(sessions, down_vm)[0][3] == "0000:00:03.0"


def test_a_stopped_vms_detach_changes_its_definition_only(sessions, hosts, fake, host, down_vm, pci, db):
    pci(fn("0000:02:00.0", group=1), fn("0000:02:00.1", group=1))
    out = attach(sessions, hosts, down_vm)
    assert statuses(sessions, host)["0000:02:00.1"] == ("unavailable", None)     # its group is held
    detach(sessions, hosts, down_vm, out.id)
    assert fake.calls == [] and attachments(sessions, down_vm) == []
    assert statuses(sessions, host) == {"0000:02:00.0": ("available", None), "0000:02:00.1": ("available", None)}


def test_a_stopped_vm_with_no_host_having_them_is_refused(sessions, hosts, fake, host, down_vm, pci, db):
    pci(fn("0000:02:00.0", group=1))
    err = refused(sessions, db, fake, "PCI_ATTACH", lambda: attach(sessions, hosts, down_vm, count=2),
                  "NO_HOST_WITH_PCI_DEVICES")
    assert err.reasons[0].vars["missing"] == ["2 × a1 (1 free)"]
    assert "the request asks for" in err.reasons[0].message


# ---- detach --------------------------------------------------------------------------------------

def test_live_detach_unplugs_it_and_frees_its_iommu_group(sessions, hosts, fake, host, up_vm, pci, db):
    pci(fn("0000:02:00.0", group=1), fn("0000:02:00.1", group=1))
    out = attach(sessions, hosts, up_vm)
    assert statuses(sessions, host)["0000:02:00.1"] == ("unavailable", None)
    done = detach(sessions, hosts, up_vm, out.id)
    assert not done.pending
    (unplug,) = fake.sent("VM.hotunplugHostdev")
    assert unplug["hostdev"] == {"alias": f"ua-{out.id}"}
    assert attachments(sessions, up_vm) == []
    assert statuses(sessions, host) == {"0000:02:00.0": ("available", None), "0000:02:00.1": ("available", None)}


def test_a_detach_the_guest_is_slow_with_is_pending_and_ends_with_the_hosts_report(sessions, hosts, fake, host,
                                                                                    up_vm, pci, db):
    pci(fn("0000:02:00.0", group=1))
    out = attach(sessions, hosts, up_vm)
    fake.pending_unplug = True
    assert detach(sessions, hosts, up_vm, out.id).pending
    assert [a[2] for a in attachments(sessions, up_vm)] == ["detaching"]
    assert statuses(sessions, host)["0000:02:00.0"] == ("allocated", up_vm.id)    # the guest still has it
    with pytest.raises(Exception) as again:
        detach(sessions, hosts, up_vm, out.id)
    assert [r.code for r in again.value.reasons] == ["DEVICE_IN_FLIGHT"]
    fake.finish_unplug(up_vm.id, f"ua-{out.id}")
    monitor_reads(sessions, hosts, host)
    assert attachments(sessions, up_vm) == []
    assert statuses(sessions, host)["0000:02:00.0"] == ("available", None)


def test_a_refused_unplug_keeps_the_device_attached(sessions, hosts, fake, host, up_vm, pci, db):
    pci(fn("0000:02:00.0", group=1))
    out = attach(sessions, hosts, up_vm)
    fake.fail("VM.hotunplugHostdev", "hostdevUnplugFailed")
    with pytest.raises(HostCallFailed):
        detach(sessions, hosts, up_vm, out.id)
    assert [a[2] for a in attachments(sessions, up_vm)] == ["attached"]
    assert "detach" not in db.device(out.id).custom_properties     # a later unplug does not take the row
    assert detach(sessions, hosts, up_vm, out.id).pending is False
    assert attachments(sessions, up_vm) == []


def test_only_a_pci_device_is_an_attachment(sessions, hosts, fake, host, up_vm, pci, db):
    pci()
    with sessions.begin() as s:
        (usb,) = host_devices.sync(s, host.id, [{"name": "usb_1_2", "capability": "usb_device", "vendorId": "0781",
                                                 "productId": "5567", "portPath": "1-2", "allowed": True}],
                                   capabilities=("usb_device",)).added
    from engine.commands import add_hostdev
    row = add_hostdev.execute(sessions, hosts, add_hostdev.Params(up_vm.id, usb)).id
    with pytest.raises(NotFound):
        detach(sessions, hosts, up_vm, row)
    with pytest.raises(NotFound):
        detach(sessions, hosts, up_vm, "no-such-attachment")


# ---- refusals ------------------------------------------------------------------------------------

def test_iommu_group_kept_by_the_host_is_refused_naming_it(sessions, hosts, fake, host, up_vm, pci, db):
    pci(fn("0000:02:00.0", group=5), fn("0000:02:00.1", AUDIO, group=5, allowed=False, driver="snd_hda_intel"))
    err = refused(sessions, db, fake, "PCI_ATTACH", lambda: attach(sessions, hosts, up_vm), "IOMMU_GROUP_BUSY")
    assert err.reasons[0].vars["group"] == 5 and len(err.reasons[0].vars["blockers"]) == 1


def test_too_few_devices_on_the_vms_host_is_refused(sessions, hosts, fake, host, up_vm, pci, db):
    pci(fn("0000:02:00.0", group=1))
    err = refused(sessions, db, fake, "PCI_ATTACH", lambda: attach(sessions, hosts, up_vm, count=2),
                  "PCI_DEVICES_SHORT")
    assert err.reasons[0].vars == {"host": host.name, "wanted": "2 × a1", "free": 1}


@pytest.mark.parametrize("alias, count, codes", [
    ("b9", 1, ["PCI_ALIAS_UNKNOWN"]),
    ("a1", 0, ["PCI_REQUEST_INVALID"]),
    ("a1", 17, ["PCI_REQUEST_INVALID"]),
    ("a 1", 1, ["PCI_REQUEST_INVALID"]),
])
def test_what_the_request_gets_wrong_is_refused(sessions, hosts, fake, host, up_vm, pci, db, alias, count, codes):
    pci(fn("0000:02:00.0", group=1))
    refused(sessions, db, fake, "PCI_ATTACH", lambda: attach(sessions, hosts, up_vm, alias, count), *codes)


def test_a_paused_vm_is_refused(sessions, hosts, fake, host, make_vm, pci, db):
    pci(fn("0000:02:00.0", group=1))
    vm = make_vm(status="paused", host=host)
    refused(sessions, db, fake, "PCI_ATTACH", lambda: attach(sessions, hosts, vm), "VM_STATUS_ILLEGAL")


def test_a_q35_vm_without_free_ports_is_refused_before_the_host(sessions, hosts, fake, host, make_vm, pci, db):
    pci(fn("0000:02:00.0", group=1), fn("0000:02:00.1", group=2))
    vm = make_vm(machine="q35", boot={"pciePorts": 1})
    run_vm.execute(sessions, hosts, run_vm.Params(vm.id))
    err = refused(sessions, db, fake, "PCI_ATTACH", lambda: attach(sessions, hosts, vm, count=2), "NO_FREE_PCIE_PORT")
    assert err.reasons[0].vars == {"vm": vm.name, "free": 1, "wanted": 2}
    attach(sessions, hosts, vm)
    assert [a[3] for a in attachments(sessions, vm)] == ["0000:01:00.0"]     # on the spare root port
    refused(sessions, db, fake, "PCI_ATTACH", lambda: attach(sessions, hosts, vm), "NO_FREE_PCIE_PORT")


def test_every_reason_at_once(sessions, hosts, fake, host, make_vm, pci, db):
    pci()
    vm = make_vm(status="paused", host=host)
    refused(sessions, db, fake, "PCI_ATTACH", lambda: pci_attach.execute(
        sessions, hosts, pci_attach.Params(vm.id, request="a1:0,zz:1")), "PCI_REQUEST_INVALID", "VM_STATUS_ILLEGAL")


# ---- tenancy -------------------------------------------------------------------------------------

def test_a_member_attaches_and_detaches_on_its_projects_vm(sessions, hosts, fake, host, up_vm, pci, db):
    pci(fn("0000:02:00.0", group=1))
    member = Principal("m", roles=frozenset({MEMBER}), projects=frozenset({up_vm.project_id}))
    out = attach(sessions, hosts, up_vm, principal=member)
    assert statuses(sessions, host)["0000:02:00.0"] == ("allocated", up_vm.id)
    detach(sessions, hosts, up_vm, out.id, principal=member)
    assert statuses(sessions, host)["0000:02:00.0"] == ("available", None)


def test_another_projects_vm_does_not_exist_for_a_member(sessions, hosts, fake, host, up_vm, pci, db):
    pci(fn("0000:02:00.0", group=1))
    out = attach(sessions, hosts, up_vm)
    stranger = Principal("x", roles=frozenset({MEMBER}), projects=frozenset({"elsewhere"}))
    before, calls = rows(sessions), len(fake.calls)
    with pytest.raises(NotFound):
        attach(sessions, hosts, up_vm, principal=stranger)
    with pytest.raises(NotFound):
        detach(sessions, hosts, up_vm, out.id, principal=stranger)
    assert rows(sessions) == before and len(fake.calls) == calls


def test_check_says_what_execute_would(sessions, hosts, fake, host, up_vm, pci, db):
    pci(fn("0000:02:00.0", group=1))
    with sessions() as s:
        from engine.dao import vms
        vm = vms.get(s, up_vm.id)
        assert pci_attach.check(s, vm, pci_attach.Params(vm.id, "a1", 1)) == []
        assert [r.code for r in pci_attach.check(s, vm, pci_attach.Params(vm.id, "a1", 2))] == ["PCI_DEVICES_SHORT"]
    assert fake.calls == []
    with pytest.raises(ValidationFailed):
        attach(sessions, hosts, up_vm, count=2)
