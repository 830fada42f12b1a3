"""A host's device inventory, read from its agent (Host.hostdevListByCaps) and brought into
`host_devices`: when the host is added or refreshed, and when its journal says a device came or went,
so a USB key plugged in shows up within seconds rather than at the next poll.

One audit event tells what a sync changed (counts), and each device a VM holds that left the host, or
came back to it, gets its own event on the VM: its owner must hear of it.

A journal event names the device that came or went: only that device is read from the agent and
synced (`names`); the whole inventory is read at registration, on refresh and at each reconciliation,
the safety net for an event lost or misread.

A running VM's device that comes back (same identity) is plugged into it again (`reattach`), as
Proxmox and Incus do; a plugged device whose device is gone stays plugged meanwhile, waiting for it.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy.orm import Session, sessionmaker

from engine.dao import audit, pci_devices, devices as devices_dao, host_devices, vms as vms_dao
from engine.dao.host_devices import CAPABILITIES, InventoryChange
from engine.dao.models import Host, HostDevice, VmDevice
from engine.devices import live
from engine.devices.state import Subject
from engine.errors import Conflict, HostCallFailed, HostUnreachable
from engine.hostclient import HostClientFactory
from engine.vocab import REMOVED, STABLE, UP

log = logging.getLogger(__name__)


def capability_of(name: str) -> str:
    """The capability of a node device, from its libvirt name (pci_0000_02_00_0, usb_1_4_2)."""
    return "pci" if name.startswith("pci_") else "usb_device"


def read(hosts: HostClientFactory, host: Host, capabilities: Iterable[str] = CAPABILITIES,
         names: Iterable[str] | None = None) -> list[dict]:
    """The host's devices of `capabilities` (only those it calls `names`, when given), as its agent
    reports them (raises the host's errors)."""
    params: dict[str, object] = {"caps": list(capabilities)}
    if names is not None:
        params["names"] = sorted(set(names))
    return list(hosts(host).call("Host.hostdevListByCaps", params).get("devices") or [])


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
          why: str = "", names: Iterable[str] | None = None) -> InventoryChange:
    """Sync the rows and audit what changed, in the caller's transaction: `devices` is the host's whole
    inventory of `capabilities`, or, with `names`, what it reports for the devices it calls so (the
    event-driven path: the same rules and audit events for a fraction of the work)."""
    capabilities = tuple(capabilities)
    if names is None:
        change = host_devices.sync(s, host.id, devices, capabilities=capabilities)
    else:
        change = host_devices.sync_named(s, host.id, names, devices, capabilities=capabilities)
    if pci_devices.PCI in capabilities:     # a sync makes a free function available: its group may say not
        pci_devices.settle_groups(s, host.id)
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
            capabilities: Iterable[str] = CAPABILITIES, *, why: str = "",
            names: Iterable[str] | None = None) -> InventoryChange:
    """Read the host's inventory (only the devices it calls `names`, when given) and store it: the
    host call outside any transaction."""
    caps = tuple(capabilities)
    names = None if names is None else sorted(set(names))
    devices = read(hosts, host, caps, names)
    with sessions.begin() as s:
        return store(s, host, devices, caps, why=why, names=names)


def gone(hd: HostDevice | None) -> bool:
    """Gone from its host as far as the inventory knows (held and pulled, or removed)."""
    return hd is not None and (not hd.present or hd.status == REMOVED)


def waiting(s: Session, dev: VmDevice) -> bool:
    """A plugged hostdev row whose device is gone from the host: the domain may lack it (dropped at
    start, or removed by libvirt) without the row being wrong -- it is plugged again on replug."""
    return dev.host_device_id is not None and gone(host_devices.get(s, dev.host_device_id))


def record_dropped(s: Session, vm_id: str, device_id: str, host: Host, why: str) -> bool:
    """A VM started without its optional host device: one warning on the VM."""
    dev, vm = devices_dao.get(s, device_id), vms_dao.get(s, vm_id)
    if dev is None or vm is None:
        return False
    subject = Subject.of(dev, vm, host)
    subject.record(s, "DROPPED", f"VM {vm.name} started on host {host.name} without {subject.label}: {why}; "
                   "its startup policy is optional, and it is plugged in again when the device comes back",
                   severity="warning")
    return True


def reattach(sessions: sessionmaker[Session], hosts: HostClientFactory, host: Host, found: Iterable[int]) -> list[str]:
    """Plug each device a running VM holds that is back on the host into that VM again: the stale
    device goes first (QEMU keeps the pulled device's bus/device numbers, which the replug changed;
    an unplug of a device the domain lacks ends unplugged too), then the device core plugs it by its
    port path, as the host numbers it now. Returns the re-attached VM device ids; a failure is logged
    and audited by the device core."""
    done: list[str] = []
    for hd_id in found:
        with sessions.begin() as s:
            dev = devices_dao.holding(s, hd_id)
            vm = vms_dao.get(s, dev.vm_id) if dev is not None else None
            if dev is None or vm is None or vm.status != UP or vm.run_on_host != host.id \
                    or not dev.is_plugged or dev.plug_state != STABLE:
                continue
            subject = Subject.of(dev, vm, host)
            unplug = live.prepare(s, dev, subject, host, plug=False)
        try:
            if live.run(sessions, hosts, unplug):
                continue        # the guest holds on to it: the unplug's own end decides
            with sessions.begin() as s:
                row = devices_dao.get(s, subject.device_id)
                if row is None or row.is_plugged or row.plug_state != STABLE:
                    continue
                plug = live.prepare(s, row, subject, host, plug=True)
            live.run(sessions, hosts, plug)
        except (HostCallFailed, HostUnreachable, Conflict) as err:
            log.warning("host %s: %s of VM %s not re-attached: %s", host.name, subject.label, subject.vm_name,
                        err.message)
            continue
        with sessions.begin() as s:
            subject.record(s, "REATTACHED", f"{subject.label} is back on host {host.name} and plugged into VM "
                           f"{subject.vm_name} again", host_device_id=hd_id)
        done.append(subject.device_id)
    return done
