"""Start a VM on a host: VM.create with only its plugged devices, each with its alias (ua-<device id>)
and the address it kept from earlier runs; the addresses libvirt assigned are stored by alias.

The host is the one asked for, or the scheduler's choice: an up host of the VM's cluster with every
network of the plugged NICs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine import scheduler
from engine.commands import common
from engine.commands import reasons as R
from engine.commands.outcome import Outcome
from engine.dao import audit, clusters, devices, hosts as hosts_dao, nics, vms
from engine.dao.models import Cluster, Host, Vm, VmDevice, VmNic
from engine.errors import Conflict, HostCallFailed, HostUnreachable, Reason, ValidationFailed
from engine.hostclient import HostClientFactory

BOOT_KEYS = ("kernel", "initrd", "cmdline", "serialLog", "pciePorts")


@dataclass(frozen=True)
class Params:
    vm_id: str
    host_id: str | None = None      # None: the scheduler picks


def validate(params: Params, *, vm: Vm, cluster: Cluster | None, host: Host | None, networks: list[str],
             in_flight: list[VmDevice]) -> list[Reason]:
    """canDo of RunVm. `host`: the requested host, or the scheduler's choice (None: not found / none
    available); `networks`: those of the VM's plugged NICs; `in_flight`: devices mid-operation."""
    found: list[Reason] = []
    if vm.status != common.DOWN:
        found.append(R.vm_not_down(vm.name, vm.status, "run the VM"))
    for device in in_flight:
        found.append(R.device_in_flight(device.id, device.plug_state))
    if host is None:
        if params.host_id is not None:
            found.append(R.host_not_found(params.host_id))
        else:
            found.append(R.no_host_available(cluster.name if cluster else vm.cluster_id, networks))
        return found
    if host.status != "up":
        found.append(R.host_not_up(host.name, host.status))
    if host.cluster_id != vm.cluster_id:
        found.append(R.host_not_in_cluster(host.name, cluster.name if cluster else vm.cluster_id))
    for network in networks:
        if not scheduler.has_networks(host.capabilities, [network]):
            found.append(R.network_not_on_host(network, host.name))
    return found


def device_params(device: VmDevice, nic: VmNic | None) -> dict[str, Any]:
    """One entry of VM.create's `devices`: a NIC as in hot plug (with its kept address), any other
    device from its spec_params (which hold the agent's fields: source, model, index ...)."""
    if device.type == "interface" and nic is not None:
        return common.nic_params(device, nic, with_address=True)
    params: dict[str, Any] = {"type": device.type, "device": device.device, "alias": device.alias}
    params.update({k: v for k, v in (device.spec_params or {}).items()
                   if k not in ("type", "device", "alias", "address")})
    if device.address:
        params["address"] = dict(device.address)
    if device.type == "hostdev" and device.boot_order:
        params["bootOrder"] = device.boot_order
    return params


def vm_params(vm: Vm, plugged: list[tuple[VmDevice, VmNic | None]]) -> dict[str, Any]:
    """VM.create's `params` (schema/verbs.yaml vmParams)."""
    params: dict[str, Any] = {"name": vm.name, "memSize": vm.memory_mb, "vcpus": vm.vcpus,
                              "machine": vm.machine, "osType": vm.os_type, "graphics": vm.graphics}
    params.update({k: v for k, v in (vm.boot or {}).items() if k in BOOT_KEYS and v not in (None, "")})
    if vm.custom_properties:
        params["customProperties"] = {str(k): str(v) for k, v in vm.custom_properties.items()}
    params["devices"] = [device_params(d, n) for d, n in plugged]
    return params


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params) -> Outcome:
    try:
        with sessions.begin() as s:
            vm = common.load_vm(s, params.vm_id)
            cluster = clusters.get(s, vm.cluster_id)
            plugged_devices = list(devices.list_for_vm(s, vm.id, plugged=True))
            nic_by_id = {n.id: n for n in nics.list_for_vm(s, vm.id, plugged=True)}
            networks = sorted({n.network for n in nic_by_id.values()})
            in_flight = [d for d in devices.list_for_vm(s, vm.id) if d.plug_state != "stable"]
            if params.host_id is not None:
                host = hosts_dao.get(s, params.host_id)
            else:
                host = scheduler.select_host(s, cluster_id=vm.cluster_id, networks=networks)
            found = validate(params, vm=vm, cluster=cluster, host=host, networks=networks, in_flight=in_flight)
            if found:
                raise common.refusal(found, f"Cannot run VM {vm.name}.")
            assert host is not None
            create = {"vmId": vm.id, "params": vm_params(vm, [(d, nic_by_id.get(d.id)) for d in plugged_devices])}
            by_alias = {d.alias: d.id for d in plugged_devices}
            vm_name = vm.name
            if not vms.set_status_cas(s, vm.id, (common.DOWN,), "powering_up", run_on_host=host.id):
                raise Conflict(f"Cannot run VM {vm_name}: its status changed meanwhile.",
                               reasons=[R.vm_not_down(vm_name, "changing", "run the VM")])
    except (ValidationFailed, Conflict) as err:
        common.audit_refusal(sessions, "VM_START_FAILED", f"Cannot run VM {params.vm_id}", err, vm_id=params.vm_id)
        raise

    try:
        result = hosts(host).call("VM.create", create)
    except (HostUnreachable, HostCallFailed) as err:
        with sessions.begin() as s:
            vms.set_status_cas(s, params.vm_id, ("powering_up",), common.DOWN, run_on_host=None)
            common.audit_vm_host_failure(s, err, failed_code="VM_START_FAILED", action="run",
                                         vm_id=params.vm_id, vm_name=vm_name, host=host)
        raise

    with sessions.begin() as s:
        for reported in (result or {}).get("devices") or []:
            dev_id = by_alias.get(reported.get("alias") or "")
            if dev_id is not None and reported.get("address"):
                devices.set_address(s, dev_id, reported["address"])
        vms.set_status_cas(s, params.vm_id, ("powering_up",), common.UP, run_on_host=host.id)
        audit.record(s, "VM_STARTED", f"VM {vm_name} started on host {host.name}", vm_id=params.vm_id,
                     host_id=host.id, host=host.name, devices=len(create["params"]["devices"]))
    return Outcome(id=params.vm_id)
