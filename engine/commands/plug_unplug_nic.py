"""Activate (plug) or deactivate (unplug) a NIC of a VM.

VM down: only the desired state changes. VM up: the device core's live runner (VM.hotplugNic /
VM.hotunplugNic); an unplug the guest has not completed yet answers pending and stays 'unplugging'
until the host reports it. A plugged or in-flight NIC claims its MAC.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine import reasons as R
from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common
from engine.commands.outcome import Outcome
from engine.dao import clusters, nics
from engine.dao.models import Cluster, Host, Vm, VmDevice, VmNic
from engine.devices import kinds, pcie_ports
from engine.errors import Reason
from engine.hostclient import HostClientFactory
from engine.vocab import UP


@dataclass(frozen=True)
class Params:
    vm_id: str
    nic_id: str
    plug: bool


def validate(params: Params, *, vm: Vm, nic: VmNic, device: VmDevice, cluster: Cluster | None,
             host: Host | None, mac_in_use: bool, free_ports: int | None = None) -> list[Reason]:
    """canDo of plug/unplug. `host` is the host the VM runs on (None when down or unknown);
    `mac_in_use` whether another plugged NIC has this NIC's MAC; `free_ports` the PCIe root ports free
    on a running q35 VM (None: not counted)."""
    found = common.check_plug(vm, device, plug=params.plug)
    if params.plug and mac_in_use:
        found.append(R.mac_in_use(nic.mac))
    if vm.status == UP:
        found += common.check_live_nic_hotplug(vm, cluster, host, nic.network if params.plug else None)
        found += pcie_ports.check(vm, free_ports, 1) if params.plug else []
    return found


def check(s: Session, vm: Vm, dev: VmDevice, host: Host | None, params: Params) -> list[Reason]:
    """canDo with its inputs read from the database; `host` is common.running_host's."""
    nic = dev.nic
    assert nic is not None
    taken = params.plug and nics.mac_taken(s, nic)
    return validate(params, vm=vm, nic=nic, device=dev, cluster=clusters.get(s, vm.cluster_id), host=host,
                    mac_in_use=taken, free_ports=pcie_ports.free(vm) if params.plug else None)


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    return common.plug_or_unplug(sessions, hosts, vm_id=params.vm_id, device_id=params.nic_id, plug=params.plug,
                                 kind=kinds.NIC, principal=principal,
                                 checks=lambda s, vm, dev, host: check(s, vm, dev, host, params))
