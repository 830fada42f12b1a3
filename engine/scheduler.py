"""Where a VM runs: an up host of the VM's cluster that has every network the VM's plugged NICs use
(and, for a flavor's USB devices, has them free). Among those, the host running the fewest VMs wins
(ties broken by name, so the choice is stable)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from engine.dao import host_devices, hosts as hosts_dao
from engine.dao.models import Host
from engine.vocab import HOST_UP, RUNNING_STATUSES


def networks_of(capabilities: Mapping[str, Any] | None) -> set[str]:
    """The bridges and libvirt networks a host reported (lists or maps)."""
    caps = capabilities or {}
    return set(caps.get("bridges") or ()) | set(caps.get("networks") or ())


def has_networks(capabilities: Mapping[str, Any] | None, networks: Iterable[str]) -> bool:
    """Whether every network is a bridge or a libvirt network the host reported."""
    known = networks_of(capabilities)
    return all(n in known for n in networks)


def candidates(hosts: Iterable[Host], *, cluster_id: str, networks: Iterable[str] = ()) -> list[Host]:
    """Pure filter: up hosts of the cluster that have the networks."""
    wanted = list(networks)
    return [h for h in hosts
            if h.cluster_id == cluster_id and h.status == HOST_UP and has_networks(h.capabilities, wanted)]


def pick(hosts: Iterable[Host], load: Mapping[str, int], *, cluster_id: str,
         networks: Iterable[str] = ()) -> Host | None:
    """Pure choice: the least loaded candidate (`load`: running VMs per host id)."""
    found = candidates(hosts, cluster_id=cluster_id, networks=networks)
    if not found:
        return None
    return min(found, key=lambda h: (load.get(h.id, 0), h.name))


def select_host(s: Session, *, cluster_id: str, networks: Iterable[str] = ()) -> Host | None:
    """An up host of `cluster_id` for a VM whose plugged NICs use `networks`, or None."""
    hosts = hosts_dao.list(s, cluster_id=cluster_id, status=HOST_UP)
    load = hosts_dao.running_vm_counts(s, [h.id for h in hosts], RUNNING_STATUSES)
    return pick(hosts, load, cluster_id=cluster_id, networks=networks)


def hosts_with_devices(s: Session, *, cluster_id: str, networks: Iterable[str], wants: Sequence[host_devices.Want],
                       host_id: str | None = None) -> list[Host]:
    """Up hosts of `cluster_id` with the networks and every wanted USB device free, least loaded first:
    the inventory is read in one grouped query (host_devices.hosts_with_free), the networks (a host's
    reported capabilities) are filtered here on its answer."""
    wanted = list(networks)
    found = host_devices.hosts_with_free(s, wants, cluster_id=cluster_id, host_status=HOST_UP,
                                         running_statuses=RUNNING_STATUSES, host_id=host_id)
    return [h for h, _load in found if has_networks(h.capabilities, wanted)]


def free_for(s: Session, *, cluster_id: str, networks: Iterable[str], wants: Sequence[host_devices.Want]) -> list[int]:
    """For each want, the most devices free for it on one up host of the cluster with the networks."""
    return host_devices.free_counts(s, wants, up_hosts_with_networks(s, cluster_id=cluster_id, networks=networks))


def up_hosts_with_networks(s: Session, *, cluster_id: str, networks: Iterable[str]) -> list[str]:
    """The ids of the cluster's up hosts that have the networks."""
    wanted = list(networks)
    return [h.id for h in hosts_dao.list(s, cluster_id=cluster_id, status=HOST_UP)
            if has_networks(h.capabilities, wanted)]
