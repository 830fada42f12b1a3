"""Free PCIe root ports of a running q35 VM: what a hot-plug of a NIC or a PCI host device needs.

A q35 domain gets a fixed number of pcie-root-ports at start: the agent builds `pciePorts` spare ones
on top of those the domain's own devices will take (vdsm_plugin/domxml/domain.py, root_port_consumers);
QEMU cannot add a root port later. The engine keeps, for the run, a base (vms.pcie_ports_base): the
spare ports plus the ports the devices it started with take. The ports free now are the base minus
the ports the VM's devices take now, plugged or on their way in or out. The constant devices libvirt
adds (memballoon, the default USB controller) are left out of both, so they cancel.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from engine import reasons as R
from engine.dao.models import Vm, VmDevice
from engine.devices import kinds
from engine.errors import Reason
from engine.vocab import RUNNING_STATUSES, UNPLUGGING

Q35 = "q35"


def _bus(address: dict[str, Any]) -> int | None:
    text = str(address.get("bus", ""))
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        return None


def takes_root_port(dev: VmDevice) -> bool:
    """Whether the device takes a pcie-root-port of its own. Mirrors the agent's `_takes_root_port`
    (vdsm_plugin/domxml/domain.py), which sizes the domain: a device whose guest address is on bus 0
    sits on pcie-root itself; otherwise the kind says (a NIC, a PCI host device, a USB controller that
    is not model none)."""
    address = dev.address or {}
    if address and _bus(address) == 0:
        return False
    return kinds.of(dev).root_port(dev)


def on_wire(dev: VmDevice) -> bool:
    """In the guest or on its way in or out (is_plugged turns true when a plug begins)."""
    return bool(dev.is_plugged) or dev.plug_state == UNPLUGGING


def spare(vm: Vm, default: int) -> int | None:
    """The spare ports a q35 VM is started with (its boot.pciePorts, else the engine's default);
    None for other machines."""
    if vm.machine != Q35:
        return None
    return int((vm.boot or {}).get("pciePorts", default))


def base(vm: Vm, default: int, started: Iterable[VmDevice]) -> int | None:
    """vms.pcie_ports_base of a run that starts with `started` (the devices VM.create gets)."""
    ports = spare(vm, default)
    return None if ports is None else ports + sum(map(takes_root_port, started))


def free(vm: Vm, devices: Iterable[VmDevice] | None = None) -> int | None:
    """The ports free for hot-plug now; None when the VM does not run or is not q35. `devices`: the
    VM's, when already read (else its relationship is read, only when it counts)."""
    if vm.pcie_ports_base is None or vm.machine != Q35 or vm.status not in RUNNING_STATUSES:
        return None
    rows = vm.devices if devices is None else devices
    return max(0, vm.pcie_ports_base - sum(takes_root_port(d) for d in rows if on_wire(d)))


def check(vm: Vm, free_ports: int | None, wanted: int) -> list[Reason]:
    """The refusal of a hot-plug of `wanted` port-taking devices when fewer are free."""
    if free_ports is None or free_ports >= wanted:
        return []
    return [R.no_free_pcie_port(vm.name, free_ports, wanted)]
