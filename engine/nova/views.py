"""Rows as Nova's 2.1 bodies. Called inside the request's read session (a server's host is loaded
through its relationship).

A server's status follows the VM's: down is SHUTOFF, powering_up BUILD, up ACTIVE (powering_down
too, with task_state powering-off), paused PAUSED, and unknown (its host stopped answering) ERROR,
Nova 2.1's word for a server the cloud cannot vouch for."""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

from engine import vocab
from engine.dao.models import Flavor, Vm
from engine.nova.common import bookmark, links

# Nova's power_state numbers (nova.compute.power_state).
NOSTATE, RUNNING, PAUSED, SHUTDOWN = 0, 1, 3, 4

#: VM status -> (Nova status, vm_state, task_state, power_state)
STATES: dict[str, tuple[str, str, str | None, int]] = {
    vocab.DOWN: ("SHUTOFF", "stopped", None, SHUTDOWN),
    vocab.POWERING_UP: ("BUILD", "building", "spawning", NOSTATE),
    vocab.UP: ("ACTIVE", "active", None, RUNNING),
    vocab.PAUSED: ("PAUSED", "paused", None, PAUSED),
    vocab.POWERING_DOWN: ("ACTIVE", "active", "powering-off", RUNNING),
    vocab.UNKNOWN: ("ERROR", "error", None, NOSTATE),
}


def timestamp(value: datetime | None) -> str | None:
    """Nova's ISO 8601 form in UTC, e.g. 2013-09-03T04:01:32Z (naive values are UTC)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- flavors -------------------------------------------------------------------------------------

def flavor_summary(f: Flavor) -> dict[str, Any]:
    return {"id": f.id, "links": links("flavors", f.id), "name": f.name}


def flavor_detail(f: Flavor) -> dict[str, Any]:
    return {"id": f.id, "name": f.name, "ram": f.memory_mb, "vcpus": f.vcpus, "disk": f.disk_gb,
            "swap": "", "OS-FLV-EXT-DATA:ephemeral": 0, "OS-FLV-DISABLED:disabled": False,
            "os-flavor-access:is_public": bool(f.is_public), "rxtx_factor": 1.0,
            "links": links("flavors", f.id)}


# ---- servers -------------------------------------------------------------------------------------

def server_summary(v: Vm) -> dict[str, Any]:
    return {"id": v.id, "name": v.name, "links": links("servers", v.id)}


def server_created(v: Vm) -> dict[str, Any]:
    """The body of a create's 202 (Nova gives an admin password too; Plugboard sets none)."""
    return {"id": v.id, "links": links("servers", v.id), "OS-DCF:diskConfig": "MANUAL",
            "security_groups": [{"name": "default"}]}


def _states(v: Vm) -> tuple[str, str, str | None, int]:
    """(status, vm_state, task_state, power_state) of the server, as Nova spells them."""
    return STATES.get(v.status, STATES[vocab.UNKNOWN])


def server_status(v: Vm) -> str:
    """The server's Nova status (ACTIVE, SHUTOFF, BUILD, ...)."""
    return _states(v)[0]


def server_detail(v: Vm, *, admin: bool) -> dict[str, Any]:
    """A server's detail. The OS-EXT-SRV-ATTR attributes (which host runs it) are an administrator's
    only, as Nova's os-extended-server-attributes policy has them: a member learns nothing of hosts."""
    status, vm_state, task_state, power_state = _states(v)
    host = v.host.name if v.host is not None else None
    flavor = {"id": v.flavor, "links": [{"rel": "bookmark", "href": bookmark("flavors", v.flavor)}]} \
        if v.flavor else {}
    return {
        "id": v.id,
        "name": v.name,
        "status": status,
        "tenant_id": v.project_id,
        "user_id": v.created_by,
        "metadata": dict(v.meta or {}),
        "hostId": hashlib.sha224(f"{v.project_id}{host}".encode()).hexdigest() if host else "",
        "image": "",
        "flavor": flavor,
        "created": timestamp(v.created_at),
        "updated": timestamp(v.updated_at),
        "addresses": {},
        "accessIPv4": "",
        "accessIPv6": "",
        "links": links("servers", v.id),
        "progress": 0,
        "key_name": None,
        "config_drive": "",
        "security_groups": [{"name": "default"}],
        "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": v.cluster.name if v.cluster is not None else "",
        "OS-EXT-STS:vm_state": vm_state,
        "OS-EXT-STS:task_state": task_state,
        "OS-EXT-STS:power_state": power_state,
        **({"OS-EXT-SRV-ATTR:host": host, "OS-EXT-SRV-ATTR:hypervisor_hostname": host,
            "OS-EXT-SRV-ATTR:instance_name": v.name} if admin else {}),
        "OS-SRV-USG:launched_at": None,
        "OS-SRV-USG:terminated_at": None,
        "os-extended-volumes:volumes_attached": [],
    }
