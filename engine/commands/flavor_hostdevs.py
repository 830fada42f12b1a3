"""The USB host devices a VM's flavor asks for (extra spec ``usb_devices``): which host the VM starts
on, and the VM's hostdev rows for them.

When the rows are made: at the VM's first start, for both forms (``{"id": N}`` and vendor/product).
AddVm only defines a VM (database, no host); "any 0781:5567" has no device until a host is chosen,
and meeting both forms at one moment keeps one path. RunVm asks the scheduler for the up hosts that
have every requested device free (one grouped query over the inventory), claims the devices on the
first with compare-and-set -- a device taken meanwhile by another request sends it to the next host
-- and makes the VM's hostdev rows as AddHostdev makes a stopped VM's (plugged, allocated, the
source by port path), so they ride in VM.create like any other host device.

How long they stay: as Nova keeps an instance's PCI devices allocated for as long as the instance
exists, the devices stay the VM's across stop and start (the VM is pinned to their host, seed 001's
restriction) and are released when the VM is removed (vms.delete). The rows are marked
(custom_properties origin=flavor): a VM that has them has had its flavor's request met and is not
placed again.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine import flavor_specs, scheduler
from engine.commands import hostdev_rules
from engine.commands.add_hostdev import STARTUP_POLICIES
from engine.dao import devices, flavors, host_devices
from engine.dao.models import Host, HostDevice, Vm, VmDevice
from engine.devices import kinds
from engine.devices.claims import FLAVOR, ORIGIN



@dataclass(frozen=True)
class Placement:
    """A VM's flavor's USB requests not met yet, and the hosts that can meet them, best first."""

    flavor: str
    wants: tuple[flavor_specs.UsbRequest, ...]
    hosts: list[Host]
    missing: list[str]      # when no host: each request no host can meet, with what is free of it


def from_flavor(dev: VmDevice) -> bool:
    return (dev.custom_properties or {}).get(ORIGIN) == FLAVOR


def wants(s: Session, vm: Vm) -> tuple[str, tuple[flavor_specs.UsbRequest, ...]]:
    """The VM's flavor name and the USB devices it asks for that the VM does not hold yet (none once
    they were placed, or when the flavor's specs no longer parse: AddVm and the flavor commands
    refuse those)."""
    flavor = flavors.get(s, vm.flavor) if vm.flavor else None
    if flavor is None or flavor_specs.validate(flavor.extra_specs):
        return "", ()
    requests = flavor_specs.usb_requests(flavor.extra_specs)
    if not requests or any(from_flavor(d) for d in devices.list_for_vm(s, vm.id, type=kinds.HOSTDEV.type)):
        return flavor.name, ()
    return flavor.name, requests


def placement(s: Session, vm: Vm, *, networks: list[str], host_id: str | None = None) -> Placement | None:
    """Where the VM's flavor's USB devices can be had (only on `host_id` when given); None when the
    flavor asks for none, or they are the VM's already."""
    name, requests = wants(s, vm)
    if not requests:
        return None
    hosts = scheduler.hosts_with_devices(s, cluster_id=vm.cluster_id, networks=networks, wants=requests,
                                         host_id=host_id)
    return Placement(name, requests, hosts, [] if hosts else missing(s, vm, requests, networks))


def missing(s: Session, vm: Vm, requests: Sequence[flavor_specs.UsbRequest], networks: list[str]) -> list[str]:
    free = scheduler.free_for(s, cluster_id=vm.cluster_id, networks=networks, wants=requests)
    return [f"{want.describe()} ({count} free)" for want, count in zip(requests, free) if count < want.count]


def _share_out(free: Sequence[HostDevice], requests: Sequence[flavor_specs.UsbRequest]) -> list[HostDevice] | None:
    """The devices for every request, requests by id served first; None if they do not go round."""
    left = list(free)
    chosen: list[HostDevice] = []
    for want in sorted(requests, key=lambda w: w.id is None):
        picks = [d for d in left if host_devices.matches(d, want)][:want.count]
        if len(picks) < want.count:
            return None
        chosen += picks
        left = [d for d in left if d not in picks]
    return chosen


def take(s: Session, vm: Vm, host: Host, requests: Sequence[flavor_specs.UsbRequest]) -> list[VmDevice] | None:
    """Claim the requested devices on `host` for the VM and make its plugged hostdev rows; None, with
    nothing kept, when another request took one of them first."""
    chosen = _share_out(host_devices.free_on_host(s, host.id, requests), requests)
    if chosen is None:
        return None
    claimed: list[int] = []
    for hd in chosen:
        if not host_devices.claim(s, hd.id, vm.id):
            for dev_id in claimed:
                host_devices.release(s, dev_id, vm.id)
            return None
        claimed.append(hd.id)
    rows = []
    for hd in chosen:
        host_devices.allocate(s, hd.id, vm.id)      # in the VM's definition from now on
        spec = {"source": hostdev_rules.source(hd), "startupPolicy": STARTUP_POLICIES[False]}
        rows.append(devices.add(s, vm.id, type=kinds.HOSTDEV.type, device="usb", is_plugged=True, spec_params=spec,
                                host_device_id=hd.id, custom_properties={ORIGIN: FLAVOR}))
    return rows


def take_first(s: Session, vm: Vm, place: Placement) -> tuple[Host | None, list[VmDevice]]:
    """The first host, in the scheduler's order, where the devices could be claimed, and the rows."""
    for host in place.hosts:
        rows = take(s, vm, host, place.wants)
        if rows is not None:
            return host, rows
    return None, []
