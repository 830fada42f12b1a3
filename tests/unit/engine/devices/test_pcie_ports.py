"""Free PCIe root ports of a q35 VM, pure: which devices take a root port (the agent's rule, checked
against the agent's own function on the same devices) and what is free now."""
from __future__ import annotations

from typing import Any

import pytest

from engine.dao.models import Vm, VmDevice
from engine.devices import kinds, pcie_ports
from vdsm_plugin.domxml import domain

ON_ROOT = {"type": "pci", "domain": "0x0000", "bus": "0x00", "slot": "0x1d", "function": "0x0"}
ON_PORT = {"type": "pci", "domain": "0x0000", "bus": "0x02", "slot": "0x00", "function": "0x0"}


def a_device(type_: str, device: str, **kw: Any) -> VmDevice:
    return VmDevice(**{"id": "d1", "vm_id": "vm-1", "type": type_, "device": device, "is_plugged": True,
                       "plug_state": "stable", "alias": "ua-d1", "address": None, "spec_params": {}, **kw})


def a_vm(**kw: Any) -> Vm:
    return Vm(**{"id": "vm-1", "name": "vm1", "status": "up", "machine": "q35", "boot": {},
                 "pcie_ports_base": 4, **kw})


CASES = [
    ("a NIC", a_device("interface", "bridge"), True),
    ("a NIC on pcie-root", a_device("interface", "bridge", address=ON_ROOT), False),
    ("a NIC on a root port", a_device("interface", "bridge", address=ON_PORT), True),
    ("a PCI host device", a_device("hostdev", "pci"), True),
    ("a USB host device", a_device("hostdev", "usb"), False),
    ("a USB controller", a_device("controller", "usb", spec_params={"model": "qemu-xhci", "index": 1}), True),
    ("an ICH9 EHCI on pcie-root", a_device("controller", "usb", spec_params={"model": "ich9-ehci1", "index": 1},
                                           address=ON_ROOT), False),
    ("USB disabled", a_device("controller", "usb", spec_params={"model": "none", "index": 0}), False),
    ("a redirection device", a_device("redirdev", "spicevmc"), False),
]


@pytest.mark.parametrize("what, dev, takes", CASES, ids=[c[0] for c in CASES])
def test_which_devices_take_a_root_port_as_the_agent_counts_them(what, dev, takes):
    assert pcie_ports.takes_root_port(dev) is takes
    # the agent's own rule, on what VM.create sends it, says the same
    assert domain._takes_root_port(kinds.of(dev).payload(dev) if dev.type != "interface" else
                                   {"type": "interface", **({"address": dev.address} if dev.address else {})}) is takes


def test_the_spare_ports_are_the_vms_own_else_the_default_and_only_on_q35():
    assert pcie_ports.spare(a_vm(), 4) == 4
    assert pcie_ports.spare(a_vm(boot={"pciePorts": 0}), 4) == 0
    assert pcie_ports.spare(a_vm(machine="pc"), 4) is None


def test_the_base_counts_the_devices_the_vm_starts_with():
    started = [a_device("interface", "bridge"), a_device("hostdev", "pci"), a_device("hostdev", "usb"),
               a_device("interface", "bridge", address=ON_ROOT)]
    assert pcie_ports.base(a_vm(boot={"pciePorts": 2}), 4, started) == 4
    assert pcie_ports.base(a_vm(machine="pc"), 4, started) is None


def test_free_is_the_base_less_the_ports_taken_now_plugged_or_on_the_way():
    devs = [a_device("interface", "bridge", address=ON_PORT),
            a_device("hostdev", "pci", is_plugged=True, plug_state="plugging"),
            a_device("hostdev", "pci", is_plugged=False, plug_state="unplugging", address=ON_PORT),
            a_device("hostdev", "pci", is_plugged=False)]       # off the wire: takes nothing
    assert pcie_ports.free(a_vm(pcie_ports_base=5), devs) == 2
    assert pcie_ports.free(a_vm(pcie_ports_base=2), devs) == 0


@pytest.mark.parametrize("vm", [a_vm(status="down"), a_vm(machine="pc"), a_vm(pcie_ports_base=None)],
                         ids=["down", "pc", "no base"])
def test_free_is_none_off_a_running_q35_vm(vm):
    assert pcie_ports.free(vm, []) is None


def test_check_refuses_only_when_fewer_are_free_than_wanted():
    assert pcie_ports.check(a_vm(), 2, 2) == []
    assert pcie_ports.check(a_vm(), None, 5) == []
    (reason,) = pcie_ports.check(a_vm(), 1, 2)
    assert reason.code == "NO_FREE_PCIE_PORT" and reason.vars == {"vm": "vm1", "free": 1, "wanted": 2}
