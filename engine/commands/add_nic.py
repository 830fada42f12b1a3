"""Add a NIC to a VM -- and, when it is added active to a running VM, plug it.

Adding is a database step; activating on a running VM goes through the plug state machine
(see plug_unplug_nic). Policy when that plug fails: the NIC is kept, deactivated (is_plugged False)
with the host's error in last_error and a NIC_PLUG_FAILED audit event, and the command answers the
host's fault (the NIC is then listed, unplugged, and can be activated again).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common
from engine import reasons as R
from engine.commands.outcome import Outcome
from engine.dao import audit, clusters, nics
from engine.dao.models import NIC_MODELS, Cluster, Host, Vm
from engine.devices import live as live_runner, pcie_ports, state
from engine.errors import Reason
from engine.hostclient import HostClientFactory
from engine.macpool import MacPool


@dataclass(frozen=True)
class Params:
    vm_id: str
    name: str
    network: str
    model: str = "pv"
    mac: str | None = None          # None: the next free address of the MAC pool
    linked: bool = True
    active: bool = True             # plugged; on a running VM this hot-plugs it


def validate(params: Params, *, vm: Vm, cluster: Cluster | None, host: Host | None,
             name_in_use: bool, mac_in_use: bool, free_ports: int | None = None) -> list[Reason]:
    """canDo of AddNic. `host`: the host a running VM is on; `name_in_use`: another NIC of the VM has
    the name; `mac_in_use`: a plugged NIC already has the requested MAC; `free_ports`: the PCIe root
    ports free on a running q35 VM (None: not counted)."""
    found: list[Reason] = []
    found += common.check_name("NIC", params.name)
    if not found and name_in_use:
        found.append(R.name_in_use("NIC", params.name))
    found += common.check_network_name(params.network)
    if params.model not in NIC_MODELS:
        found.append(R.nic_model_unsupported(params.model, NIC_MODELS))
    if params.mac is not None:
        bad_mac = common.check_mac_format(params.mac)
        found += bad_mac
        if not bad_mac and params.active and mac_in_use:
            found.append(R.mac_in_use(params.mac))
    if params.active:
        if vm.status not in common.PLUG_STATUSES:
            found.append(R.vm_status_illegal(vm.name, vm.status, common.PLUG_STATUSES, "add an active NIC"))
        elif vm.status == common.UP:
            found += common.check_live_nic_hotplug(vm, cluster, host, params.network)
            found += pcie_ports.check(vm, free_ports, 1)
    return found


def _inputs(s: Session, vm: Vm, params: Params) -> dict[str, Any]:
    """What validate() needs besides the VM."""
    live = params.active and vm.status == common.UP
    mac_taken = params.mac is not None and not common.check_mac_format(params.mac) \
        and nics.mac_in_use(s, params.mac)
    return {"cluster": clusters.get(s, vm.cluster_id), "host": common.load_host(s, vm) if live else None,
            "name_in_use": common.name_ok(params.name) and nics.name_in_use(s, vm.id, params.name),
            "mac_in_use": mac_taken,
            "free_ports": pcie_ports.free(vm) if live else None}


def check(s: Session, vm: Vm, params: Params) -> list[Reason]:
    """canDo with its inputs read from the database (what execute checks; nothing changes)."""
    return validate(params, vm=vm, **_inputs(s, vm, params))


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            mac_pool: MacPool | None = None, principal: Principal = LOCAL_ADMIN) -> Outcome:
    pool = mac_pool or MacPool()
    with common.audited(sessions, "NIC_ADD", vm_id=params.vm_id), common.unique_name("NIC", params.name):
        with sessions.begin() as s:
            # locked: a live add takes a PCIe port, as a plug does (common.plug_or_unplug)
            vm = common.load_vm(s, principal, params.vm_id, for_update=True)
            live = params.active and vm.status == common.UP
            inputs = _inputs(s, vm, params)
            host = inputs["host"]
            found = validate(params, vm=vm, **inputs)
            if found:
                raise common.refusal(found, f"Cannot add NIC {params.name} to VM {vm.name}.")
            mac = nics.normalize_mac(params.mac) if params.mac else pool.allocate(s)
            nic = nics.add(s, vm.id, name=params.name, mac=mac, network=params.network, model=params.model,
                           linked=params.linked, is_plugged=params.active and not live)
            device = nic.device
            audit.record(s, "NIC_ADDED", f"NIC {nic.name} ({mac}, network {nic.network}) added to VM {vm.name}"
                         + (", deactivated" if not params.active else ""),
                         vm_id=vm.id, device_id=nic.id, nic=nic.name, mac=mac, active=params.active)
            subject = state.Subject.of(device, vm, host)
            if not live:
                if params.active:       # to be plugged at the next start: it claims its MAC now
                    state.claim_for_next_start(s, subject, device)
                return Outcome(id=nic.id, created=True)
            assert host is not None
            call = live_runner.prepare(s, device, subject, host, plug=True)
    return Outcome(id=call.subject.device_id, created=True, pending=live_runner.run(sessions, hosts, call))
