"""PCI inventories and aliases for the engine's tests: functions as the agent reports them
(Host.hostdevListByCaps), written through host_devices.sync, the configured aliases written as the
engine writes them at start, and the reads the placement and race tests assert on."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from engine.dao import host_devices, pci_aliases
from engine.dao.models import HostDevice, VmDevice
from engine.pci_aliases import Alias

E1000E = ("8086", "10d3")           # 82574L
I350 = ("8086", "1521")
CX5 = ("15b3", "1017")              # ConnectX-5
NVME = ("144d", "a808")
# a1: an e1000e or an I350 (one name twice means any of them); b1: an I350 only, so an I350 is a
# device either alias could take; c1: a ConnectX-5.
ALIASES = (Alias("a1", *E1000E), Alias("a1", *I350), Alias("b1", *I350), Alias("c1", *CX5))


def fn(address: str, ids: tuple[str, str] = E1000E, *, group: int | None = None, allowed: bool = True,
       driver: str | None = "e1000e", name: str | None = None) -> dict[str, Any]:
    """One PCI function as the agent reports it; `address` like "0000:03:00.0"."""
    domain, bus, rest = address.split(":")
    slot, function = rest.split(".")
    return {"name": name or f"pci_{domain}_{bus}_{slot}_{function}", "capability": "pci",
            "vendorId": ids[0], "productId": ids[1], "vendorName": None, "productName": None,
            "pciAddress": address, "iommuGroup": group, "driver": driver, "parent": "computer",
            "allowed": allowed}


def bridge(address: str, *, group: int) -> dict[str, Any]:
    """A PCIe root port in an IOMMU group, as hosts often have (never whitelisted)."""
    return fn(address, ("8086", "7c90"), group=group, allowed=False, driver="pcieport")


def inventory(sessions, host, *items: dict[str, Any]) -> dict[str, int]:
    """The host's PCI inventory becomes `items`; their ids by PCI address."""
    with sessions.begin() as s:
        host_devices.sync(s, host.id, list(items), capabilities=("pci",))
        return {d.pci_address: d.id for d in host_devices.list_for_host(s, host.id, capability="pci")}


def configure(sessions, *aliases: Alias) -> None:
    """The engine's configured aliases, as it writes them when it starts."""
    with sessions.begin() as s:
        pci_aliases.replace_all(s, aliases)


def statuses(sessions, host) -> dict[str, tuple[str, str | None]]:
    """PCI address -> (status, holder VM) of every function of the host."""
    with sessions() as s:
        return {d.pci_address: (d.status, d.vm_id)
                for d in host_devices.list_for_host(s, host.id, capability="pci")}


def holdings(sessions) -> tuple[dict[int, str], dict[int, list[str]]]:
    """Who holds what, from both sides: each held device's VM (host_devices.vm_id), and for each
    device every VM whose hostdev row names it (vm_devices.host_device_id)."""
    with sessions() as s:
        held = dict(s.execute(select(HostDevice.id, HostDevice.vm_id)
                              .where(HostDevice.vm_id.is_not(None))).tuples().all())
        rows: dict[int, list[str]] = {}
        for dev_id, vm_id in s.execute(select(VmDevice.host_device_id, VmDevice.vm_id)
                                       .where(VmDevice.host_device_id.is_not(None))).tuples().all():
            rows.setdefault(dev_id, []).append(vm_id)
    return held, rows


def double_allocations(sessions) -> list[str]:
    """Every way a device is given twice: a device two VMs' rows name, a held device whose row is
    another VM's, and an IOMMU group of one host held by two VMs."""
    held, rows = holdings(sessions)
    found = [f"device {d}: rows of {vms}" for d, vms in rows.items() if len(vms) > 1]
    found += [f"device {d}: held by {held[d]}, row of {vms[0]}" for d, vms in rows.items()
              if d in held and held[d] != vms[0]]
    with sessions() as s:
        groups: dict[tuple[str, int], set[str]] = {}
        for host_id, group, vm_id in s.execute(select(HostDevice.host_id, HostDevice.iommu_group, HostDevice.vm_id)
                                               .where(HostDevice.vm_id.is_not(None),
                                                      HostDevice.iommu_group.is_not(None))).tuples():
            groups.setdefault((host_id, group), set()).add(vm_id)
    found += [f"IOMMU group {g} of host {h}: held by {sorted(vms)}" for (h, g), vms in groups.items() if len(vms) > 1]
    return found
