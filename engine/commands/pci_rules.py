"""Giving a VM PCI devices by alias, shared by the flavor's devices at start (flavor_pci) and hot-plug
(pci_attach): which aliases a request names, which free devices of a host meet it with their IOMMU
groups whole, the claim of each (compare-and-set), and the VM's hostdev rows for them.

The rows carry what the agent is sent (a managed PCI source by host address, so libvirt moves the
function to vfio-pci and back) and, in custom_properties, where they came from (`origin`: flavor or
attachment) and the alias that asked for them (`pci_alias`)."""
from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy.orm import Session

from engine import reasons as R
from engine.commands.hostdev_rules import label
from engine.dao import devices, host_devices, pci_aliases, pci_devices
from engine.dao.models import HostDevice, Vm, VmDevice
from engine.devices import kinds, pcie_ports
from engine.devices.claims import ORIGIN
from engine.errors import Reason
from engine.pci_aliases import PciRequest, by_name
from engine.vocab import PLUGGING, RUNNING_STATUSES, UNPLUGGING

ATTACHMENT = "attachment"
ALIAS = "pci_alias"
PCI = "pci"
# An attachment's status, from its row's plug state (the seeds' words).
ATTACHING, ATTACHED, DETACHING, DETACHED = "attaching", "attached", "detaching", "detached"


def source(hd: HostDevice) -> dict[str, Any]:
    """The agent's pciSource of a device: its host address ("0000:01:00.0") as hex fields."""
    domain, bus, rest = (hd.pci_address or "").split(":")
    slot, function = rest.split(".")
    return {"domain": f"0x{domain}", "bus": f"0x{bus}", "slot": f"0x{slot}", "function": f"0x{function}"}


def is_pci(dev: VmDevice) -> bool:
    return dev.type == kinds.HOSTDEV.type and dev.device == PCI


def origin(dev: VmDevice) -> str | None:
    return (dev.custom_properties or {}).get(ORIGIN)


def alias_of(dev: VmDevice) -> str | None:
    return (dev.custom_properties or {}).get(ALIAS)


def unknown_aliases(requests: Sequence[PciRequest], configured: Collection[str]) -> list[Reason]:
    """A reason for each requested alias that is not configured."""
    return [R.pci_alias_unknown(r.alias, sorted(configured)) for r in requests if r.alias not in configured]


def alias_pairs(s: Session, requests: Sequence[PciRequest]) -> tuple[pci_devices.Pairs, list[Reason]]:
    """The (vendor, product) pairs of each requested alias, and a reason for each alias not configured."""
    configured = by_name(pci_aliases.list_all(s))
    return configured, unknown_aliases(requests, configured)


def _share_out(s: Session, vm: Vm, free: Sequence[HostDevice], requests: Sequence[PciRequest],
               pairs: pci_devices.Pairs) -> list[tuple[PciRequest, HostDevice]] | None:
    """Devices for every request, the alias with the fewest candidates served first, each device with
    its IOMMU group free for the VM; None when they do not go round."""
    left = list(free)
    chosen: list[tuple[PciRequest, HostDevice]] = []
    order = sorted(requests, key=lambda r: sum((d.vendor_id, d.product_id) in pairs[r.alias] for d in left))
    for want in order:
        picks: list[HostDevice] = []
        for dev in left:
            if len(picks) == want.count:
                break
            if (dev.vendor_id, dev.product_id) not in pairs[want.alias]:
                continue
            taking = [d.id for _, d in chosen] + [d.id for d in picks]
            if not pci_devices.group_blockers(s, dev, vm.id, taking=taking):
                picks.append(dev)
        if len(picks) < want.count:
            return None
        chosen += [(want, d) for d in picks]
        left = [d for d in left if d not in picks]
    return chosen


def fits(s: Session, vm: Vm, host_id: str, requests: Sequence[PciRequest], pairs: pci_devices.Pairs) -> bool:
    """Whether the host's free devices meet every request with their IOMMU groups whole (what `take`
    would claim now; nothing changes)."""
    return _share_out(s, vm, pci_devices.free_on_host(s, host_id, requests, pairs), requests, pairs) is not None


def take(s: Session, vm: Vm, host_id: str, requests: Sequence[PciRequest], pairs: pci_devices.Pairs, *,
         origin: str, plugged: bool, allocate: bool) -> list[VmDevice] | None:
    """Claim devices meeting every request on the host for the VM and make its hostdev rows (plugged
    or not; the devices allocated at once, or left claimed for a live plug to allocate). None, with
    nothing kept, when the host has not enough or another request took one first.

    The free devices and their IOMMU groups are locked (pci_devices.lock) and read again before any
    is chosen: a request that finds a device taken meanwhile picks another free one of the host
    rather than giving the host up. The locks are held in a savepoint, let go if the host is."""
    free = pci_devices.free_on_host(s, host_id, requests, pairs)
    if not free:
        return None
    savepoint = s.begin_nested()
    locked = pci_devices.lock(s, host_id, free)
    free = [d for d in pci_devices.free_on_host(s, host_id, requests, pairs) if d.id in locked]
    chosen = _share_out(s, vm, free, requests, pairs)
    if chosen is None or not all(host_devices.claim(s, hd.id, vm.id) for _, hd in chosen):
        savepoint.rollback()
        for _, hd in chosen or ():
            s.expire(hd)
        return None
    rows = []
    for want, hd in chosen:
        if allocate:
            host_devices.allocate(s, hd.id, vm.id)
        rows.append(devices.add(s, vm.id, type=kinds.HOSTDEV.type, device=PCI, is_plugged=plugged,
                                spec_params={"source": source(hd), "managed": True}, host_device_id=hd.id,
                                custom_properties={ORIGIN: origin, ALIAS: want.alias}))
    pci_devices.settle_groups(s, host_id, {hd.iommu_group for _, hd in chosen if hd.iommu_group is not None})
    savepoint.commit()
    return rows


def shortage(s: Session, host_name: str, host_id: str, requests: Sequence[PciRequest],
             pairs: pci_devices.Pairs) -> list[Reason]:
    """Why the host cannot meet the requests: each one it has too few free devices for, or the IOMMU
    groups in the way of the free devices it has."""
    free = pci_devices.free_counts(s, requests, pairs, [host_id])
    found = [R.pci_devices_short(host_name, r.describe(), n) for r, n in zip(requests, free) if n < r.count]
    if found:
        return found
    return group_reasons(s, pci_devices.free_on_host(s, host_id, requests, pairs), vm_id=None) or \
        [R.pci_devices_short(host_name, ", ".join(r.describe() for r in requests), sum(free))]


def group_reasons(s: Session, devs: Sequence[HostDevice], *, vm_id: str | None) -> list[Reason]:
    """One reason per device whose IOMMU group another VM or the host keeps."""
    found = []
    for dev in devs:
        blockers = pci_devices.group_blockers(s, dev, vm_id or "")
        if blockers:
            assert dev.iommu_group is not None
            found.append(R.iommu_group_busy(label(dev), dev.iommu_group, [label(b) for b in blockers]))
    return found


# ---- a VM's PCI devices as attachments (os-pci_attachments) ----------------------------------------

def attachments(s: Session, vm_id: str) -> list[VmDevice]:
    """The VM's PCI host devices, whoever gave them (an attach by alias, or its flavor for the run)."""
    return [d for d in devices.list_for_vm(s, vm_id, type=kinds.HOSTDEV.type) if d.device == PCI]


def status(dev: VmDevice) -> str:
    if dev.plug_state == PLUGGING:
        return ATTACHING
    if dev.plug_state == UNPLUGGING:
        return DETACHING
    return ATTACHED if dev.is_plugged else DETACHED


def guest_address(dev: VmDevice) -> str | None:
    """The guest's PCI address of the device as libvirt reported it, written as a host's is
    ("0000:03:00.0"); None while it is in no running guest."""
    address = kinds.pci_address(dev.address)
    if address is None or dev.vm.status not in RUNNING_STATUSES or status(dev) not in (ATTACHED, DETACHING):
        return None
    try:
        domain, bus, slot, function = (int(str(address.get(k, 0)), 16) for k in ("domain", "bus", "slot", "function"))
    except ValueError:
        return None
    return f"{domain:04x}:{bus:02x}:{slot:02x}.{function:x}"


def pcie_ports_free(vm: Vm) -> int | None:
    """The PCIe root ports free for hot-plug on a running q35 VM, else None (what the views show)."""
    return pcie_ports.free(vm)
