"""Rows as what the pages show: the status words of VMs and devices (engine.vocab's words, with the
display status of the NICs sub-tab: plugged, unplugged, plugging, unplugging, error) and the values
of each column. Called inside the request's read session."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from engine import osinfo
from engine.dao.models import AuditEvent, Host, Vm, VmDevice
from engine.devices import kinds
from engine.vocab import DOWN, IN_FLIGHT_STATES, PLUGGING, RUNNING_STATUSES, UNPLUGGING, UP

PLUGGED, UNPLUGGED, ERROR = "plugged", "unplugged", "error"
#: A VM whose status may change by itself soon: its page is refreshed faster.
VM_MOVING = tuple(s for s in RUNNING_STATUSES if s not in (UP,))


def os_name(os_type: str) -> str:
    info = osinfo.get(os_type)
    return info.name if info else os_type


def _epoch(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
    return aware.timestamp()


def vm_row(vm: Vm, hosts: dict[str, str]) -> dict[str, Any]:
    return {"id": vm.id, "name": vm.name, "status": vm.status, "os": os_name(vm.os_type), "os_type": vm.os_type,
            "host": hosts.get(vm.run_on_host or "", ""), "project": vm.project_id, "memory_mb": vm.memory_mb,
            "vcpus": vm.vcpus, "machine": vm.machine, "graphics": vm.graphics, "flavor": vm.flavor,
            "running": vm.status in RUNNING_STATUSES, "down": vm.status == DOWN}


def device_status(dev: VmDevice) -> str:
    if dev.plug_state == PLUGGING:
        return PLUGGING
    if dev.plug_state == UNPLUGGING:
        return UNPLUGGING
    if dev.last_error:
        return ERROR
    return PLUGGED if dev.is_plugged else UNPLUGGED


def error_text(error: dict[str, Any] | None) -> str:
    if not error:
        return ""
    parts = [str(error.get(k)) for k in ("message", "host_message") if error.get(k)]
    code = error.get("host_code") or error.get("code")
    return (f"[{code}] " if code else "") + " — ".join(dict.fromkeys(parts))


def device_row(dev: VmDevice, vm: Vm) -> dict[str, Any]:
    kind = kinds.of(dev)
    spec = dev.spec_params or {}
    row: dict[str, Any] = {
        "id": dev.id, "label": kind.describe(dev), "status": device_status(dev), "plugged": dev.is_plugged,
        "in_flight": dev.plug_state in IN_FLIGHT_STATES, "since": _epoch(dev.plug_started_at),
        "error": error_text(dev.last_error), "address": dev.address, "alias": dev.alias,
        # VM not running: the flag is all that changes; it is applied when the VM next starts.
        "next_start": vm.status not in RUNNING_STATUSES,
        "spec": spec, "device": dev.device,
    }
    if dev.nic is not None:
        row.update(name=dev.nic.name, mac=dev.nic.mac, network=dev.nic.network, model=dev.nic.model,
                   linked=dev.nic.linked)
    return row


def event_row(e: AuditEvent) -> dict[str, Any]:
    return {"id": e.id, "time": e.time, "severity": e.severity, "code": e.code, "message": e.message,
            "host_code": e.host_code, "host_message": e.host_message, "actor": e.actor,
            "reasons": (e.vars or {}).get("reasons") or []}


def host_row(h: Host, vm_count: int) -> dict[str, Any]:
    caps = h.capabilities or {}
    networks = caps.get("networks") or {}
    bridges = caps.get("bridges") or {}
    names = sorted(set(networks) | set(bridges)) if isinstance(networks, dict) else sorted(networks)
    details = {k: v for k, v in caps.items() if k not in ("networks", "bridges", "hostdevs", "devices")
               and isinstance(v, (str, int, float, bool))}
    return {"id": h.id, "name": h.name, "status": h.status, "url": h.url, "cluster": h.cluster.name if h.cluster
            else h.cluster_id, "networks": names, "capabilities": details, "last_refresh": h.last_refresh,
            "vms": vm_count}
