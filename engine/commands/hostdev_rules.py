"""What attaching a USB host device to a VM checks, shared by adding, activating and starting: the
device exists, is a USB device, is on the host's whitelist, is still plugged into the host, is free
(or already the VM's), and sits on the host the VM runs on -- or, for a stopped VM, on the host its
other devices pin it to (a VM with host devices does not move, seed 001's restriction)."""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from engine import reasons as R
from engine.dao import devices, host_devices, hosts as hosts_dao
from engine.dao.host_devices import HELD
from engine.devices import inventory
from engine.dao.models import HostDevice, Vm, VmDevice
from engine.errors import Reason
from engine.vocab import AVAILABLE, MANDATORY, UNAVAILABLE, UP

USB = "usb_device"


def label(hd: HostDevice) -> str:
    """How a message names a host device: ids, product and where it is plugged."""
    product = f" {hd.product_name}" if hd.product_name else ""
    return f"{hd.id} ({hd.vendor_id}:{hd.product_id}{product} at {hd.port_path or hd.pci_address or hd.name})"


def source(hd: HostDevice) -> dict[str, Any]:
    """The agent's usbSource for the device: its port path, which survives a replug (the agent resolves
    it to the bus/device of the moment); else its serial; else its ids."""
    if hd.port_path:
        return {"portPath": hd.port_path}
    if hd.serial:
        return {"serial": hd.serial}
    return {"vendor": hd.vendor_id, "product": hd.product_id}


def pinned_host(s: Session, vm: Vm, *, besides: int | None = None) -> str | None:
    """The host whose devices the VM holds (None when it holds none)."""
    held = [d for d in host_devices.list_for_vm(s, vm.id) if d.id != besides]
    return held[0].host_id if held else None


def required(dev: VmDevice) -> bool:
    """The VM may not start without this device (its startup policy is mandatory)."""
    return (dev.spec_params or {}).get("startupPolicy") == MANDATORY


def missing_at_start(s: Session, plugged: list[VmDevice]) -> tuple[list[HostDevice], list[VmDevice]]:
    """Of a starting VM's plugged devices, the missing host devices it requires, and its plugged rows
    whose optional device is missing (left out of VM.create; they come back when it is replugged)."""
    required_missing: list[HostDevice] = []
    dropped: list[VmDevice] = []
    for dev in plugged:
        hd = host_devices.get(s, dev.host_device_id) if dev.host_device_id is not None else None
        if not inventory.gone(hd):
            continue
        if required(dev):
            assert hd is not None
            required_missing.append(hd)
        else:
            dropped.append(dev)
    return required_missing, dropped


def host_name(s: Session, host_id: str | None) -> str:
    host = hosts_dao.get(s, host_id) if host_id else None
    return host.name if host is not None else str(host_id)


def check(s: Session, vm: Vm, hd: HostDevice | None, device_id: object, *, row_id: str | None = None) -> list[Reason]:
    """Every reason the device cannot go to the VM now (the VM's status is the caller's). `row_id`:
    the VM's own hostdev row when it is plugged again (the device may then be the VM's already)."""
    if hd is None:
        return [R.host_device_not_found(device_id)]
    found: list[Reason] = []
    name, where = label(hd), host_name(s, hd.host_id)
    holder = devices.holding(s, hd.id)
    if hd.capability != USB:
        found.append(R.host_device_capability(name, hd.capability))
    if holder is not None and holder.id != row_id:
        found.append(R.host_device_busy(name, "attached to a VM" if hd.status not in HELD else hd.status))
    elif hd.status == UNAVAILABLE:
        found.append(R.host_device_not_allowed(name, where))
    elif hd.status != AVAILABLE and not (row_id is not None and hd.vm_id == vm.id):
        found.append(R.host_device_busy(name, hd.status))
    if not hd.present:
        found.append(R.host_device_gone(name, where))
    target = vm.run_on_host if vm.status == UP else pinned_host(s, vm, besides=hd.id)
    if target is not None and hd.host_id != target:
        found.append(R.host_device_on_other_host(name, where, vm.name, host_name(s, target)))
    return found
