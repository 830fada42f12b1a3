"""Host-device claims of hostdev rows: the host_devices row a VM's device stands for goes available ->
claimed when the device is to be plugged (a compare-and-set: two VMs never get one device), claimed ->
allocated once the host has it, and back to available when the device is unplugged for good or the
VM goes away. `vm_devices.host_device_id` (unique) links the two rows.

A PCI function also needs its IOMMU group: it is claimed only when no other VM (nor the host) keeps a
member, and while it is held its free siblings are unavailable (engine.dao.pci_devices).

The HOSTDEV kind (engine.devices.kinds) uses `claim` and `release` as its claim hooks, so the state
machine takes and gives back host devices exactly as it does a NIC's MAC.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from engine import reasons as R
from engine.dao import devices, host_devices, pci_devices
from engine.dao.models import HostDevice, VmDevice
from engine.errors import Reason

PCI = "pci"
# custom_properties of a PCI row a flavor gave the VM for one run (engine.commands.pci_rules).
ORIGIN, FLAVOR = "origin", "flavor"
# custom_properties of a row that goes when its device is given back: its removal was asked while it
# was plugged into a running VM, and waits for the guest to release it (the unplug may answer pending
# and finish when the host reports the removal, through any path that ends it: see `release`).
DETACH = "detach"


def _name(hd: HostDevice) -> str:
    return f"{hd.id} ({hd.vendor_id}:{hd.product_id} at {hd.pci_address or hd.port_path or hd.name})"


def _settle(s: Session, hd: HostDevice | None) -> None:
    if hd is not None and hd.capability == PCI and hd.iommu_group is not None:
        pci_devices.settle_groups(s, hd.host_id, {hd.iommu_group})


def claim(s: Session, dev: VmDevice) -> list[Reason]:
    """Claim the host device the row stands for; a reason when another VM holds it, it is not
    available, or (PCI) its IOMMU group is kept by another VM or the host. A row without a host device
    (a request by vendor/product resolved on the host) claims nothing here."""
    if dev.host_device_id is None:
        return []
    row = host_devices.get(s, dev.host_device_id)
    if row is not None and row.vm_id == dev.vm_id and row.status in host_devices.HELD:
        return []       # already ours (e.g. a plug retried after the host refused)
    if row is not None and row.capability == PCI:
        pci_devices.lock(s, row.host_id, [row])     # its group, read as it is once no other claim is in it
        blockers = pci_devices.group_blockers(s, row, dev.vm_id)
        if blockers:
            assert row.iommu_group is not None
            return [R.iommu_group_busy(_name(row), row.iommu_group, [_name(b) for b in blockers])]
    if not host_devices.claim(s, dev.host_device_id, dev.vm_id):
        name = row.name if row is not None else str(dev.host_device_id)
        return [R.host_device_busy(name, row.status if row is not None else "gone")]
    _settle(s, row)
    return []


def allocated(s: Session, device_id: str) -> None:
    """The host has the device: claimed -> allocated."""
    dev = devices.get(s, device_id)
    if dev is not None and dev.host_device_id is not None:
        host_devices.allocate(s, dev.host_device_id, dev.vm_id)


def release(s: Session, device_id: str, error: dict[str, Any] | None = None) -> None:
    """Give the host device back; a failed plug's error stays on it (the seeds' "failed"). A row
    marked for detach goes with it."""
    dev = devices.get(s, device_id)
    if dev is None:
        return
    if dev.host_device_id is not None:
        host_devices.release(s, dev.host_device_id, dev.vm_id, error=error)
        _settle(s, host_devices.get(s, dev.host_device_id))
    if (dev.custom_properties or {}).get(DETACH):
        s.delete(dev)
        s.flush()


def mark_detach(dev: VmDevice, detach: bool = True) -> None:
    """Mark the row to go when its device is given back (or take the mark off: the unplug failed)."""
    props = {k: v for k, v in (dev.custom_properties or {}).items() if k != DETACH}
    dev.custom_properties = {**props, DETACH: True} if detach else props


def drop_for_run(s: Session, vm_id: str) -> int:
    """The PCI devices a flavor gave the VM for the run that ended (or never began) go back to their
    host, and their rows go: the next start places the VM again. Returns how many."""
    rows = [d for d in devices.list_for_vm(s, vm_id, type="hostdev")
            if d.device == PCI and (d.custom_properties or {}).get(ORIGIN) == FLAVOR]
    for dev in rows:
        release(s, dev.id)
        s.delete(dev)
    if rows:
        s.flush()
    return len(rows)
