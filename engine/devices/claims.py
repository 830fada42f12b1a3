"""Host-device claims of hostdev rows: the host_devices row a VM's device stands for goes available ->
claimed when the device is to be plugged (a compare-and-set: two VMs never get one device), claimed ->
allocated once the host has it, and back to available when the device is unplugged for good or the
VM goes away. `vm_devices.host_device_id` (unique) links the two rows.

The HOSTDEV kind (engine.devices.kinds) uses `claim` and `release` as its claim hooks, so the state
machine takes and gives back host devices exactly as it does a NIC's MAC.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from engine import reasons as R
from engine.dao import devices, host_devices
from engine.dao.models import VmDevice
from engine.errors import Reason


def claim(s: Session, dev: VmDevice) -> list[Reason]:
    """Claim the host device the row stands for; a reason when another VM holds it or it is not
    available. A row without a host device (a request by vendor/product resolved on the host) claims
    nothing here."""
    if dev.host_device_id is None:
        return []
    row = host_devices.get(s, dev.host_device_id)
    if row is not None and row.vm_id == dev.vm_id and row.status in host_devices.HELD:
        return []       # already ours (e.g. a plug retried after the host refused)
    if not host_devices.claim(s, dev.host_device_id, dev.vm_id):
        name = row.name if row is not None else str(dev.host_device_id)
        return [R.host_device_busy(name, row.status if row is not None else "gone")]
    return []


def allocated(s: Session, device_id: str) -> None:
    """The host has the device: claimed -> allocated."""
    dev = devices.get(s, device_id)
    if dev is not None and dev.host_device_id is not None:
        host_devices.allocate(s, dev.host_device_id, dev.vm_id)


def release(s: Session, device_id: str, error: dict[str, Any] | None = None) -> None:
    """Give the host device back; a failed plug's error stays on it (the seeds' "failed")."""
    dev = devices.get(s, device_id)
    if dev is not None and dev.host_device_id is not None:
        host_devices.release(s, dev.host_device_id, dev.vm_id, error=error)
