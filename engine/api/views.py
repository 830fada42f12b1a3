"""Rows as the plain dicts the API answers with. Called inside the request's read session, so that
relationships are loaded while it is open; the response schemas then dump the dicts."""
from __future__ import annotations

from typing import Any

from engine import osinfo
from engine.commands import pci_rules
from engine.dao.models import AuditEvent, Cluster, Host, HostDevice, Vm, VmDevice, VmNic
from engine.vocab import MANDATORY, UNPLUGGING


def cluster_view(c: Cluster) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "compat_version": c.compat_version, "description": c.description,
            "created_at": c.created_at}


def host_view(h: Host) -> dict[str, Any]:
    return {"id": h.id, "name": h.name, "cluster_id": h.cluster_id, "url": h.url, "status": h.status,
            "capabilities": h.capabilities or {}, "last_refresh": h.last_refresh, "created_at": h.created_at}


def host_device_view(d: HostDevice) -> dict[str, Any]:
    return {"id": d.id, "host_id": d.host_id, "name": d.name, "capability": d.capability,
            "vendor_id": d.vendor_id, "product_id": d.product_id, "vendor_name": d.vendor_name,
            "product_name": d.product_name, "bus": d.bus, "device": d.device, "port_path": d.port_path,
            "serial": d.serial, "pci_address": d.pci_address, "iommu_group": d.iommu_group, "driver": d.driver,
            "allowed": d.allowed, "status": d.status, "present": d.present, "vm_id": d.vm_id,
            "last_error": d.last_error, "updated_at": d.updated_at}


def vm_view(v: Vm) -> dict[str, Any]:
    return {"id": v.id, "name": v.name, "project_id": v.project_id, "cluster_id": v.cluster_id,
            "os_type": v.os_type, "status": v.status, "run_on_host": v.run_on_host, "memory_mb": v.memory_mb,
            "vcpus": v.vcpus, "machine": v.machine, "graphics": v.graphics, "flavor": v.flavor,
            "boot": v.boot or {}, "custom_properties": v.custom_properties or {},
            "pcie_ports_free": pci_rules.pcie_ports_free(v), "created_by": v.created_by, "created_at": v.created_at,
            "updated_at": v.updated_at}


def device_state(d: VmDevice) -> dict[str, Any]:
    """What every device kind shows of the plug state machine. `plugged` is the desired state; the
    address is the guest's while the device is on the wire (plugged, or still being unplugged)."""
    on_wire = d.is_plugged or d.plug_state == UNPLUGGING
    return {"plugged": d.is_plugged, "plug_state": d.plug_state, "address": d.address if on_wire else None,
            "alias": d.alias, "last_error": d.last_error}


def nic_view(n: VmNic, device: VmDevice | None = None) -> dict[str, Any]:
    """`device`: the NIC's vm_devices row when the caller holds it (else read through n.device)."""
    return {"id": n.id, "vm_id": n.vm_id, "name": n.name, "mac": n.mac, "network": n.network,
            "model": n.model, "linked": n.linked, **device_state(device if device is not None else n.device)}


def controller_view(d: VmDevice) -> dict[str, Any]:
    spec = d.spec_params or {}
    return {"id": d.id, "vm_id": d.vm_id, "type": d.device, "model": spec.get("model"), "index": spec.get("index"),
            "ports": spec.get("ports"), "master": (spec.get("master") or {}).get("startport"), **device_state(d)}


def redirdev_view(d: VmDevice) -> dict[str, Any]:
    spec = d.spec_params or {}
    return {"id": d.id, "vm_id": d.vm_id, "bus": "usb", "type": d.device, "host": spec.get("host"),
            "port": spec.get("port"), "mode": spec.get("mode"), **device_state(d)}


def hostdev_view(d: VmDevice) -> dict[str, Any]:
    spec = d.spec_params or {}
    return {"id": d.id, "vm_id": d.vm_id, "host_device_id": d.host_device_id, "source": spec.get("source") or {},
            "required": spec.get("startupPolicy") == MANDATORY,
            # False while the device is pulled from its host (the VM keeps it; a replug plugs it again).
            "present": d.host_device.present if d.host_device is not None else None, **device_state(d)}


def pci_attachment_view(d: VmDevice, host_name: str | None) -> dict[str, Any]:
    hd = d.host_device
    return {"attachment_id": d.id, "vm_id": d.vm_id, "dev_id": hd.name if hd else None,
            "address": hd.pci_address if hd else None, "inner_address": pci_rules.guest_address(d),
            "vendor_id": hd.vendor_id if hd else None, "product_id": hd.product_id if hd else None,
            "alias": pci_rules.alias_of(d), "origin": pci_rules.origin(d), "host": host_name,
            "status": pci_rules.status(d), "last_error": d.last_error}


def event_view(e: AuditEvent) -> dict[str, Any]:
    return {"id": e.id, "time": e.time, "severity": e.severity, "code": e.code, "message": e.message,
            "vm_id": e.vm_id, "device_id": e.device_id, "host_id": e.host_id, "host_code": e.host_code,
            "host_message": e.host_message, "vars": e.vars or {}, "actor": e.actor}


def os_view(entry: Any) -> dict[str, Any]:
    """One entry of engine.osinfo's table, with every feature of the table and whether it supports it."""
    return {"id": entry.id, "name": entry.name, "family": entry.family, "arch": getattr(entry, "arch", None),
            "supports": {feature: bool(getattr(entry, feature, False)) for feature in osinfo.FEATURES},
            "min_cluster_version": {feature: ".".join(str(p) for p in version)
                                    for feature, version in osinfo.FEATURE_MIN_CLUSTER_VERSION.items()}}
