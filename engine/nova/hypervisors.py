"""Nova's os-hypervisors/{hypervisor_hostname}, as seeds 001 and 003 extend it: the host, its USB devices
in `usb_device_stats` and its PCI functions in `pci_device_stats` (admins only, as Nova's default
policy has it). The hostname is the host's name in Plugboard; its id answers too."""
from __future__ import annotations

import json
from typing import Any

from flask import Blueprint

from engine.dao import host_devices, hosts as hosts_dao
from engine.dao.models import Host, HostDevice
from engine import reasons as R
from engine.errors import NotFound
from engine.nova.common import sessions
from engine.vocab import HOST_MAINTENANCE, HOST_UP

PCI = "pci"
PCI_DEV_TYPE = "type-PCI"       # Nova's word for a plain PCI function (not an SR-IOV PF or VF)


def usb_device_stat(d: HostDevice) -> dict[str, Any]:
    """One device in the seed's words: address is the node-device name, bus_id and device_id are
    strings, port_id the port path, empty strings where there is nothing."""
    extra = {k: v for k, v in (("vendor_name", d.vendor_name), ("product_name", d.product_name),
                               ("serial", d.serial)) if v}
    return {"id": d.id, "compute_node_id": d.host_id, "address": d.name, "product_id": d.product_id,
            "vendor_id": d.vendor_id, "bus_id": "" if d.bus is None else str(d.bus),
            "device_id": "" if d.device is None else str(d.device), "port_id": d.port_path or "",
            "status": d.status, "extra_info": json.dumps(extra) if extra else "", "instance_uuid": d.vm_id or ""}


def pci_device_stat(d: HostDevice) -> dict[str, Any]:
    """One PCI function as seed 003's pci_devices table shows it: address is the host's PCI address,
    dev_id the node-device name, label from the ids, instance_uuid the holder (null when free)."""
    extra = {k: v for k, v in (("vendor_name", d.vendor_name), ("product_name", d.product_name),
                               ("iommu_group", d.iommu_group), ("driver", d.driver)) if v is not None}
    return {"id": d.id, "compute_node_id": d.host_id, "address": d.pci_address, "product_id": d.product_id,
            "vendor_id": d.vendor_id, "dev_type": PCI_DEV_TYPE, "dev_id": d.name,
            "label": f"label_{d.vendor_id}_{d.product_id}", "status": d.status, "extra_info": json.dumps(extra),
            "instance_uuid": d.vm_id}


def hypervisor(host: Host, devices: list[HostDevice]) -> dict[str, Any]:
    return {"id": host.id, "hypervisor_hostname": host.name, "state": "up" if host.status == HOST_UP else "down",
            # Nova's disabled compute service: kept, takes no new instances (a host in maintenance).
            "status": "disabled" if host.status == HOST_MAINTENANCE else "enabled", "hypervisor_type": "QEMU",
            "usb_device_stats": [usb_device_stat(d) for d in devices if d.capability == "usb_device"],
            "pci_device_stats": [pci_device_stat(d) for d in devices if d.capability == PCI]}


def register(bp: Blueprint) -> None:
    @bp.get("/os-hypervisors/<string:hypervisor_hostname>")
    def show_hypervisor(hypervisor_hostname: str):
        with sessions()() as s:
            host = hosts_dao.get_by_name(s, hypervisor_hostname) or hosts_dao.get(s, hypervisor_hostname)
            if host is None:
                reason = R.host_not_found(hypervisor_hostname)
                raise NotFound(f"Hypervisor {hypervisor_hostname} could not be found.", reasons=[reason])
            return {"hypervisor": hypervisor(host, list(host_devices.list_for_host(s, host.id)))}
