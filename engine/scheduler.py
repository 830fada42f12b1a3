"""Where a VM runs: an up host of the VM's cluster that has every network the VM's plugged NICs use.
Among those, the host running the fewest VMs wins (ties broken by name, so the choice is stable)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from engine.dao import hosts as hosts_dao
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
