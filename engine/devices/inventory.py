"""A host's device inventory, read from its agent (Host.hostdevListByCaps) and brought into
`host_devices`: when the host is added or refreshed, and when its journal says a device came or went,
so a USB key plugged in shows up within seconds rather than at the next poll.

One audit event tells what a sync changed (counts), and each device a VM holds that left the host, or
came back to it, gets its own event on the VM: its owner must hear of it.
"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session, sessionmaker

from engine.dao import audit, host_devices, vms as vms_dao
from engine.dao.host_devices import CAPABILITIES, InventoryChange
from engine.dao.models import Host
from engine.errors import HostCallFailed
from engine.hostclient import HostClientFactory


def read(hosts: HostClientFactory, host: Host, capabilities: Iterable[str] = CAPABILITIES) -> list[dict]:
    """The host's devices of `capabilities`, as its agent reports them (raises the host's errors)."""
    return list(hosts(host).call("Host.hostdevListByCaps", {"caps": list(capabilities)}).get("devices") or [])


def read_or_warn(sessions: sessionmaker[Session], hosts: HostClientFactory, host: Host) -> list[dict] | None:
    """The host's devices, or None with a warning when its agent answered an error: a host that
    cannot list its devices is still added or refreshed (the next reconciliation reads them again).
    An unreachable host raises, as every other call to it does."""
    try:
        return read(hosts, host)
    except HostCallFailed as err:
        with sessions.begin() as s:
            audit.record(s, "HOST_DEVICES_UNREAD", f"Host {host.name} could not list its devices: "
                         f"{err.host_code} {err.host_message}", severity="warning", host_code=err.host_code,
                         host_message=err.host_message, host=host.name)
        return None


def store(s: Session, host: Host, devices: Iterable[dict], capabilities: Iterable[str] = CAPABILITIES, *,
          why: str = "") -> InventoryChange:
    """Sync the rows and audit what changed, in the caller's transaction."""
    change = host_devices.sync(s, host.id, devices, capabilities=capabilities)
    if not change:
        return change
    counts = {k: len(v) for k, v in vars(change).items() if v}
    audit.record(s, "HOST_DEVICES_SYNCED", f"Host {host.name} devices{why}: "
                 + ", ".join(f"{n} {what}" for what, n in counts.items()), host_id=host.id, host=host.name,
                 changes=counts)
    for dev_id in change.lost:
        _held_event(s, host, dev_id, "HOST_DEVICE_LOST", "is gone from host {host}; it stays with VM {vm} "
                    "until it comes back or is detached", severity="warning")
    for dev_id in change.found:
        _held_event(s, host, dev_id, "HOST_DEVICE_FOUND", "is back on host {host}, held by VM {vm}")
    return change


def _held_event(s: Session, host: Host, dev_id: int, code: str, text: str, *, severity: str = "info") -> None:
    dev = host_devices.get(s, dev_id)
    if dev is None or dev.vm_id is None:
        return
    vm = vms_dao.get(s, dev.vm_id)
    label = f"{dev.capability} device {dev.vendor_id}:{dev.product_id}" + (f" ({dev.product_name})"
                                                                           if dev.product_name else "")
    audit.record(s, code, f"Host {label} at {dev.port_path or dev.pci_address or dev.name} "
                 + text.format(host=host.name, vm=vm.name if vm else dev.vm_id), severity=severity,
                 vm_id=dev.vm_id, host_id=host.id, host_device_id=dev.id, host=host.name)


def refresh(sessions: sessionmaker[Session], hosts: HostClientFactory, host: Host,
            capabilities: Iterable[str] = CAPABILITIES, *, why: str = "") -> InventoryChange:
    """Read the host's inventory and store it: the host call outside any transaction."""
    caps = tuple(capabilities)
    devices = read(hosts, host, caps)
    with sessions.begin() as s:
        return store(s, host, devices, caps, why=why)
