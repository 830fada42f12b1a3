"""The canDo steps of PCI attach and detach, pure: rows built in memory, no database. One case per reason."""
from __future__ import annotations

from typing import Any

import pytest

from engine import reasons as R
from engine.commands import pci_attach, pci_detach
from engine.dao.models import Vm, VmDevice

CONFIGURED = frozenset({"a1", "b1"})


def a_vm(**kw: Any) -> Vm:
    return Vm(**{"id": "vm-1", "name": "vm1", "status": "up", "machine": "pc", "run_on_host": "h1", **kw})


def a_device(**kw: Any) -> VmDevice:
    return VmDevice(**{"id": "d1", "vm_id": "vm-1", "type": "hostdev", "device": "pci", "is_plugged": True,
                       "plug_state": "stable", "alias": "ua-d1", "address": None, **kw})


def codes(reasons) -> list[str]:
    return [r.code for r in reasons]


def attach(params: pci_attach.Params | None = None, *, vm: Vm | None = None, device_reasons=(), free_ports=None):
    return pci_attach.validate(params or pci_attach.Params("vm-1", "a1", 2), vm=vm or a_vm(), configured=CONFIGURED,
                               device_reasons=list(device_reasons), free_ports=free_ports)


# ---- pci_attach ------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", ["up", "down"])
def test_attach_to_an_up_or_down_vm_passes(status):
    assert attach(vm=a_vm(status=status)) == []


def test_attach_of_several_aliases_in_nova_syntax_passes():
    assert attach(pci_attach.Params("vm-1", request="a1:2,b1:1")) == []


@pytest.mark.parametrize("status", ["paused", "powering_up", "powering_down", "unknown"])
def test_attach_vm_status_illegal(status):
    reasons = attach(vm=a_vm(status=status))
    assert codes(reasons) == ["VM_STATUS_ILLEGAL"]
    assert reasons[0].vars["allowed"] == ["down", "up"]


def test_attach_alias_unknown_names_it_and_the_configured_ones():
    reasons = attach(pci_attach.Params("vm-1", "zz", 1))
    assert codes(reasons) == ["PCI_ALIAS_UNKNOWN"]
    assert reasons[0].vars == {"alias": "zz", "known": ["a1", "b1"]}


@pytest.mark.parametrize("params", [
    pci_attach.Params("vm-1", "a1", 0), pci_attach.Params("vm-1", "a1", 17), pci_attach.Params("vm-1", "a1", -1),
    pci_attach.Params("vm-1", "", 1), pci_attach.Params("vm-1", "a1:2", 1),
    pci_attach.Params("vm-1", request="a1:9,b1:8"), pci_attach.Params("vm-1", request="a1:1,a1:1"),
    pci_attach.Params("vm-1", request=""),
], ids=["zero", "seventeen", "negative", "no alias", "alias with count", "17 in all", "twice", "empty"])
def test_attach_request_invalid(params):
    assert codes(attach(params)) == ["PCI_REQUEST_INVALID"]


def test_attach_device_reasons_are_passed_on():
    busy = R.iommu_group_busy("5 (8086:10d3 at 0000:02:00.0)", 5, ["6"])
    assert codes(attach(device_reasons=[busy])) == ["IOMMU_GROUP_BUSY"]


def test_attach_no_free_pcie_port_on_a_running_vm():
    reasons = attach(free_ports=1)
    assert codes(reasons) == ["NO_FREE_PCIE_PORT"]
    assert reasons[0].vars == {"vm": "vm1", "free": 1, "wanted": 2}


def test_attach_ports_are_not_counted_for_a_stopped_vm():
    assert attach(vm=a_vm(status="down"), free_ports=0) == []


def test_attach_every_reason_at_once():
    reasons = attach(pci_attach.Params("vm-1", request="a1:2,zz:1"), vm=a_vm(status="paused"),
                     device_reasons=[R.pci_devices_short("host1", "2 × a1", 1)])
    assert codes(reasons) == ["PCI_ALIAS_UNKNOWN", "VM_STATUS_ILLEGAL", "PCI_DEVICES_SHORT"]


# ---- pci_detach ------------------------------------------------------------------------------------

def detach(*, vm: Vm | None = None, device: VmDevice | None = None):
    return pci_detach.validate(pci_detach.Params("vm-1", "d1"), vm=vm or a_vm(), device=device or a_device())


@pytest.mark.parametrize("status", ["up", "down"])
def test_detach_from_an_up_or_down_vm_passes(status):
    assert detach(vm=a_vm(status=status)) == []


def test_detach_device_in_flight():
    reasons = detach(device=a_device(plug_state="unplugging", is_plugged=False))
    assert codes(reasons) == ["DEVICE_IN_FLIGHT"]
    assert reasons[0].vars["plug_state"] == "unplugging"


def test_detach_vm_status_illegal_while_plugged():
    assert codes(detach(vm=a_vm(status="paused"))) == ["VM_STATUS_ILLEGAL"]


def test_detach_of_an_unplugged_device_passes_whatever_the_vm_does():
    assert detach(vm=a_vm(status="paused"), device=a_device(is_plugged=False)) == []
