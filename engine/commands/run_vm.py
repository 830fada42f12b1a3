"""Start a VM on a host: VM.create with only its plugged devices, each with its alias (ua-<device id>)
and the address it kept from earlier runs; the addresses libvirt assigned are stored by alias.

The host is the one asked for, or the scheduler's choice: an up host of the VM's cluster with every
network of the plugged NICs -- and, when the VM's flavor asks for USB host devices it does not hold
yet, one that has them free; they are claimed there and go into VM.create (flavor_hostdevs). PCI
devices a flavor asks for by alias are placed the same way at every start, and given back when the
run ends or the start fails (flavor_pci).

A q35 VM is started with spare PCIe root ports for hot-plug (its boot.pciePorts, else the engine's
`pcie_ports` setting); the run's port count is kept in vms.pcie_ports_base (engine.devices.pcie_ports).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from engine import agent_codes, scheduler
from engine.auth import LOCAL_ADMIN, Principal
from engine.config import EngineConfig
from engine.commands import common, flavor_hostdevs, flavor_pci, hostdev_rules
from engine import reasons as R
from engine.commands.outcome import Outcome
from engine.dao import audit, clusters, devices, host_devices, hosts as hosts_dao, vms
from engine.dao.models import Cluster, Host, HostDevice, Vm, VmDevice
from engine.errors import Conflict, HostCallFailed, HostUnreachable, Reason, ValidationFailed
from engine.devices import claims, inventory, kinds, pcie_ports as ports
from engine.hostclient import HostClientFactory

from engine.vocab import DOWN, HOST_UP, POWERING_UP, STABLE, UP

log = logging.getLogger(__name__)

BOOT_KEYS = ("kernel", "initrd", "cmdline", "serialLog", "pciePorts")


@dataclass(frozen=True)
class Params:
    vm_id: str
    host_id: str | None = None      # None: the scheduler picks


def validate(params: Params, *, vm: Vm, cluster: Cluster | None, host: Host | None, networks: list[str],
             in_flight: list[VmDevice], pinned: Host | None = None,
             usb: flavor_hostdevs.Placement | None = None, pci: flavor_pci.Placement | None = None,
             required_missing: tuple[HostDevice, ...] | list[HostDevice] = ()) -> list[Reason]:
    """canDo of RunVm. `host`: the requested host, or the scheduler's choice (None: not found / none
    available); `networks`: those of the VM's plugged NICs; `in_flight`: devices mid-operation;
    `pinned`: the host whose devices the VM holds (it runs there or nowhere); `required_missing`: host
    devices the VM requires that are gone from their host."""
    found: list[Reason] = []
    if usb is not None and not usb.hosts:       # `usb`: where the flavor's USB devices can be had
        found.append(R.no_host_with_usb_devices(cluster.name if cluster else vm.cluster_id, usb.flavor, usb.missing))
        if params.host_id is None:
            return found
    if pci is not None and not pci.hosts:       # `pci`: where the flavor's PCI devices can be had
        found += pci.reasons
        if params.host_id is None:
            return found
    for hd in required_missing:
        found.append(R.host_device_required_missing(hostdev_rules.label(hd), pinned.name if pinned else hd.host_id))
    if pinned is not None and host is not None and host.id != pinned.id:
        found.append(R.host_devices_pin_vm(vm.name, pinned.name, host.name))
    if vm.status != DOWN:
        found.append(R.vm_not_down(vm.name, vm.status, "run the VM"))
    for device in in_flight:
        found.append(R.device_in_flight(device.id, device.plug_state))
    if host is None:
        if params.host_id is not None:
            found.append(R.host_not_found(params.host_id))
        else:
            found.append(R.no_host_available(cluster.name if cluster else vm.cluster_id, networks))
        return found
    if host.status != HOST_UP:
        found.append(R.host_not_up(host.name, host.status))
    if host.cluster_id != vm.cluster_id:
        found.append(R.host_not_in_cluster(host.name, cluster.name if cluster else vm.cluster_id))
    for network in networks:
        if not scheduler.has_networks(host.capabilities, [network]):
            found.append(R.network_not_on_host(network, host.name))
    return found


def _inputs(s: Session, vm: Vm, params: Params) -> tuple[dict[str, Any], list[VmDevice], list[VmDevice]]:
    """What validate() needs besides the VM, the plugged devices VM.create gets, and the plugged host
    devices left out of it because their optional device is gone (they stay plugged: a replug brings
    them back)."""
    cluster = clusters.get(s, vm.cluster_id)
    every = devices.list_for_vm(s, vm.id)
    plugged = [d for d in every if d.is_plugged]
    required_missing, dropped = hostdev_rules.missing_at_start(s, plugged)
    networks = sorted({d.nic.network for d in plugged if d.nic is not None})
    in_flight = [d for d in every if d.plug_state != STABLE]
    pinned_id = hostdev_rules.pinned_host(s, vm)
    pinned = hosts_dao.get(s, pinned_id) if pinned_id else None
    usb = None if pinned is not None else flavor_hostdevs.placement(s, vm, networks=networks, host_id=params.host_id)
    # The best hosts for the PCI devices; all of them when the flavor asks USB devices too (a host with both).
    # Only a VM that is down is placed: a running one holds its devices (and is refused as not down).
    pci = flavor_pci.placement(s, vm, networks=networks, cluster_name=cluster.name if cluster else vm.cluster_id,
                               host_id=params.host_id or pinned_id,
                               limit=None if usb is not None else flavor_pci.SHORTLIST) if vm.status == DOWN else None
    if usb is not None and pci is not None:     # a host that has both
        usb = flavor_hostdevs.Placement(usb.flavor, usb.wants, [h for h in usb.hosts if h in pci.hosts],
                                        usb.missing)
    if params.host_id is not None:
        host = hosts_dao.get(s, params.host_id)
    elif usb is not None or pci is not None:
        places = usb.hosts if usb is not None else pci.hosts if pci is not None else []
        host = places[0] if places else None
    else:       # a VM holding host devices goes where they are; the checks then judge that host
        host = pinned or scheduler.select_host(s, cluster_id=vm.cluster_id, networks=networks)
    return {"cluster": cluster, "host": host, "networks": networks, "in_flight": in_flight,
            "pinned": pinned, "usb": usb, "pci": pci, "required_missing": required_missing}, \
        [d for d in plugged if d not in dropped], dropped


def check(s: Session, vm: Vm, params: Params) -> list[Reason]:
    """canDo with its inputs read from the database (what execute checks; nothing changes)."""
    return validate(params, vm=vm, **_inputs(s, vm, params)[0])


def vm_params(vm: Vm, plugged: list[VmDevice], *, pcie_ports: int = EngineConfig.pcie_ports) -> dict[str, Any]:
    """VM.create's `params` (schema/verbs.yaml vmParams); `pcie_ports`: the spare q35 root ports of a
    VM whose boot settings name none."""
    params: dict[str, Any] = {"name": vm.name, "memSize": vm.memory_mb, "vcpus": vm.vcpus,
                              "machine": vm.machine, "osType": vm.os_type, "graphics": vm.graphics}
    params.update({k: v for k, v in (vm.boot or {}).items() if k in BOOT_KEYS and v not in (None, "")})
    spare = ports.spare(vm, pcie_ports)
    if spare is not None:
        params["pciePorts"] = spare
    if vm.custom_properties:
        params["customProperties"] = {str(k): str(v) for k, v in vm.custom_properties.items()}
    params["devices"] = [kinds.of(d).payload(d) for d in plugged]
    return params


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN, pcie_ports: int = EngineConfig.pcie_ports) -> Outcome:
    """`pcie_ports`: the engine's default of spare q35 root ports (a VM's boot.pciePorts wins)."""
    with common.audited(sessions, "VM_START", vm_id=params.vm_id):
        with sessions.begin() as s:
            vm = common.load_vm(s, principal, params.vm_id)
            inputs, plugged_devices, dropped = _inputs(s, vm, params)
            found = validate(params, vm=vm, **inputs)
            if found:
                raise common.refusal(found, f"Cannot run VM {vm.name}.")
            host = inputs["host"]
            if inputs["usb"] is not None:       # a device lost to another request: the next host
                host, taken = flavor_hostdevs.take_first(s, vm, inputs["usb"])
                if host is None:
                    usb = inputs["usb"]
                    raise common.refusal([R.no_host_with_usb_devices(
                        inputs["cluster"].name, usb.flavor,
                        flavor_hostdevs.missing(s, vm, usb.wants, inputs["networks"]))], f"Cannot run VM {vm.name}.")
                plugged_devices = plugged_devices + taken
            if inputs["pci"] is not None:       # on the host chosen so far, else the placement's first
                pci = inputs["pci"]
                fixed = params.host_id is not None or inputs["usb"] is not None or inputs["pinned"] is not None
                among = [host] if fixed and host else None
                host, taken = flavor_pci.take_first(s, vm, pci, among=among)
                if host is None:        # taken meanwhile: what is missing now
                    missing = flavor_pci.shortfall(s, vm, pci, inputs["networks"], among[0].id if among else None)
                    raise common.refusal([R.no_host_with_pci_devices(inputs["cluster"].name, pci.flavor, missing)],
                                         f"Cannot run VM {vm.name}.")
                plugged_devices = plugged_devices + taken
            assert host is not None
            # The host as it is now, held (shared) until the VM is placed on it: a maintenance or a
            # removal of the host waits, then finds the VM; one that came first is seen here.
            now = hosts_dao.get_locked(s, host.id, shared=True)
            if now is None or now.status != HOST_UP:
                raise common.refusal([R.host_not_up(host.name, now.status if now else "removed")],
                                     f"Cannot run VM {vm.name}.")
            create: dict[str, Any] = {"vmId": vm.id, "params": vm_params(vm, plugged_devices, pcie_ports=pcie_ports)}
            ports_base = ports.base(vm, pcie_ports, plugged_devices)
            by_alias = {d.alias: d.id for d in plugged_devices}
            dropped_ids = [d.id for d in dropped]
            required = {d.alias: d.host_device_id for d in plugged_devices if hostdev_rules.required(d)}
            vm_name = vm.name
            if not vms.set_status_cas(s, vm.id, (DOWN,), POWERING_UP, run_on_host=host.id):
                raise Conflict(f"Cannot run VM {vm_name}: its status changed meanwhile.",
                               reasons=[R.vm_not_down(vm_name, "changing", "run the VM")])

    try:
        result = hosts(host).call("VM.create", create)
    except (HostUnreachable, HostCallFailed) as err:
        refused = None
        with sessions.begin() as s:
            # The run's PCI claims go only with the run: a VM no longer powering up is someone
            # else's now (removed, or a newer run holds its own claims).
            if vms.set_status_cas(s, params.vm_id, (POWERING_UP,), DOWN, run_on_host=None):
                claims.drop_for_run(s, params.vm_id)
            common.audit_vm_host_failure(s, err, failed_code="VM_START_FAILED", action="run",
                                         vm_id=params.vm_id, vm_name=vm_name, host=host)
            if isinstance(err, HostCallFailed) and err.host_code == agent_codes.code("hostdevRequiredMissing"):
                refused = _required_gone_on_host(s, err, required, vm_name, host)
        if refused is not None:
            raise refused from err
        raise

    result = result or {}
    with sessions.begin() as s:
        if vms.set_status_cas(s, params.vm_id, (POWERING_UP,), UP, run_on_host=host.id):
            for reported in result.get("devices") or []:
                dev_id = by_alias.get(reported.get("alias") or "")
                if dev_id is not None and reported.get("address"):
                    devices.set_address(s, dev_id, reported["address"])
            vms.set_run_event_seq(s, params.vm_id, result.get("eventSeq"))
            vms.set_pcie_ports_base(s, params.vm_id, ports_base)
            audit.record(s, "VM_STARTED", f"VM {vm_name} started on host {host.name}", vm_id=params.vm_id,
                         host_id=host.id, host=host.name, devices=len(create["params"]["devices"]))
            for dev_id in dropped_ids:
                inventory.record_dropped(s, params.vm_id, dev_id, host, "the inventory says it is gone")
            return Outcome(id=params.vm_id)
    # Powering up is ours alone (stop refuses it, the monitor leaves it to us): a VM no longer
    # powering up was taken away -- e.g. removed. Its domain must not run on as an orphan.
    _undo_start(hosts, host, params.vm_id)
    raise Conflict(f"VM {vm_name} changed while it was starting; its domain on host {host.name} was destroyed.",
                   reasons=[R.vm_not_down(vm_name, "changing", "run the VM")])


def _required_gone_on_host(s: Session, err: HostCallFailed, required: dict[str, int | None], vm_name: str,
                           host: Host) -> ValidationFailed:
    """The host found a required device missing that the inventory still had: the same refusal as
    canDo's, naming the device the host's message names by its alias."""
    named = [hd for alias, hd_id in required.items() if alias in (err.host_message or "")
             and hd_id is not None and (hd := host_devices.get(s, hd_id)) is not None]
    reasons = [R.host_device_required_missing(hostdev_rules.label(hd), host.name) for hd in named] or \
        [R.host_device_required_missing(err.host_message or "(unnamed)", host.name)]
    return ValidationFailed(f"Cannot run VM {vm_name}.", reasons=reasons, host_code=err.host_code,
                            host_message=err.host_message, host=host.name)


def _undo_start(hosts: HostClientFactory, host: Host, vm_id: str) -> None:
    try:
        hosts(host).call("VM.destroy", {"vmId": vm_id, "undefine": True})
    except (HostUnreachable, HostCallFailed) as err:
        log.warning("VM %s: could not destroy its orphan domain on %s: %s", vm_id, host.name, err.message)
