"""The PCI devices a VM's flavor asks for (extra spec ``pci_passthrough:alias``, seed 003): where the
VM starts, and its hostdev rows for them.

As Nova does at boot, RunVm asks for an up host with enough free, whitelisted devices of every alias
(one grouped query, engine.dao.pci_devices), claims them there with compare-and-set -- a device taken
meanwhile by another request sends it to the next host -- and makes the VM's plugged hostdev rows,
allocated, so they ride in VM.create like any other host device. They last one run: when the VM stops
(state.vm_stopped, through engine.devices.claims.drop_for_run) or is removed, the devices are released
and the rows go; the next start places the VM again. A failed start gives them back at once.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine import flavor_specs, reasons as R, scheduler
from engine.commands import pci_rules
from engine.dao import flavors, pci_devices
from engine.dao.models import Host, Vm, VmDevice
from engine.devices import claims
from engine.errors import Reason
from engine.pci_aliases import PciRequest
from engine.vocab import HOST_UP, RUNNING_STATUSES

# Hosts tried in turn when a device is taken under a request's feet.
TRIES = 5
# The best hosts a placement reads (all of them when fewer than TRIES of these have the VM's networks):
# in a large fleet, building every candidate host costs more than the query that finds them.
SHORTLIST = 4 * TRIES


@dataclass(frozen=True)
class Placement:
    """A VM's flavor's PCI requests and the hosts that can meet them, best first (the best
    SHORTLIST of them, unless the placement was asked for all)."""

    flavor: str
    wants: tuple[PciRequest, ...]
    pairs: pci_devices.Pairs
    hosts: list[Host]
    reasons: list[Reason]      # why no host can (aliases no longer configured, devices missing)


def wants(s: Session, vm: Vm) -> tuple[str, tuple[PciRequest, ...]]:
    """The VM's flavor name and the PCI devices it asks for (none when the specs no longer parse:
    the flavor commands refuse those)."""
    flavor = flavors.get(s, vm.flavor) if vm.flavor else None
    if flavor is None or flavor_specs.validate(flavor.extra_specs):
        return "", ()
    return flavor.name, flavor_specs.pci_requests(flavor.extra_specs)


def placement(s: Session, vm: Vm, *, networks: list[str], cluster_name: str,
              host_id: str | None = None, limit: int | None = SHORTLIST) -> Placement | None:
    """Where the VM's flavor's PCI devices can be had (only on `host_id` when given; the best `limit`
    hosts, None: all); None when the flavor asks for none."""
    name, requests = wants(s, vm)
    if not requests:
        return None
    return place(s, vm, requests, flavor=name, networks=networks, cluster_name=cluster_name, host_id=host_id,
                 limit=limit)


def place(s: Session, vm: Vm, requests: tuple[PciRequest, ...], *, flavor: str, networks: list[str],
          cluster_name: str, host_id: str | None = None, limit: int | None = SHORTLIST) -> Placement:
    """Where PCI requests can be had for the VM (a flavor's, or an attach's to a stopped VM: `flavor`
    empty): up hosts of its cluster with its networks and the devices free, best first."""
    pairs, unknown = pci_rules.alias_pairs(s, requests)
    if unknown:
        return Placement(flavor, requests, pairs, [], unknown)
    found = pci_devices.hosts_with_free(s, requests, pairs, cluster_id=vm.cluster_id, host_status=HOST_UP,
                                        running_statuses=RUNNING_STATUSES, host_id=host_id, limit=limit)
    hosts = [h for h in found if scheduler.has_networks(h.capabilities, networks)]
    if limit is not None and len(found) == limit and len(hosts) < TRIES:     # the best lack the networks
        found = pci_devices.hosts_with_free(s, requests, pairs, cluster_id=vm.cluster_id, host_status=HOST_UP,
                                            running_statuses=RUNNING_STATUSES, host_id=host_id)
        hosts = [h for h in found if scheduler.has_networks(h.capabilities, networks)]
    missing = [] if hosts else _missing(s, vm, requests, pairs, networks, host_id)
    reasons = [] if hosts else [R.no_host_with_pci_devices(cluster_name, flavor, missing)]
    return Placement(flavor, requests, pairs, hosts, reasons)


def _missing(s: Session, vm: Vm, requests: Sequence[PciRequest], pairs: pci_devices.Pairs,
             networks: list[str], host_id: str | None = None) -> list[str]:
    """Each request the hosts (only `host_id` when given) cannot meet, with the most free on one."""
    hosts = [h for h in scheduler.up_hosts_with_networks(s, cluster_id=vm.cluster_id, networks=networks)
             if host_id is None or h == host_id]
    free = pci_devices.free_counts(s, requests, pairs, hosts)
    return [f"{want.describe()} ({count} free)" for want, count in zip(requests, free) if count < want.count]


def shortfall(s: Session, vm: Vm, place: Placement, networks: list[str], host_id: str | None = None) -> list[str]:
    """What a refusal names as missing once no host of the placement (or `host_id`) could be claimed
    from: the requests no host can meet now, as `placement` names them."""
    return _missing(s, vm, place.wants, place.pairs, networks, host_id)


def take_first(s: Session, vm: Vm, place: Placement, *,
               among: Sequence[Host] | None = None) -> tuple[Host | None, list[VmDevice]]:
    """The first host (of `among`, else of the placement), in the scheduler's order, where the devices
    could be claimed, and the VM's rows for them."""
    for host in list(among if among is not None else place.hosts)[:TRIES]:
        rows = pci_rules.take(s, vm, host.id, place.wants, place.pairs, origin=claims.FLAVOR, plugged=True,
                              allocate=True)
        if rows is not None:
            return host, rows
    return None, []
