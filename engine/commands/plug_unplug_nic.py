"""Activate (plug) or deactivate (unplug) a NIC of a VM.

VM down: only the desired state changes (unplug also clears the stored address, so that the next
plug gets a fresh one and PCI addresses never collide). VM up: the plug state machine -- the
transition is committed before VM.hotplugNic / VM.hotunplugNic and finished after it; an unplug the
guest has not completed yet answers pending and stays 'unplugging' until the host reports it.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.commands import common
from engine.commands import reasons as R
from engine.commands.outcome import Outcome
from engine.dao import audit, clusters, devices, nics
from engine.dao.models import Cluster, Host, Vm, VmDevice, VmNic
from engine.errors import Conflict, Reason, ValidationFailed
from engine.hostclient import HostClientFactory


@dataclass(frozen=True)
class Params:
    vm_id: str
    nic_id: str
    plug: bool


def validate(params: Params, *, vm: Vm, nic: VmNic, device: VmDevice, cluster: Cluster | None,
             host: Host | None, mac_in_use: bool) -> list[Reason]:
    """canDo of plug/unplug. `host` is the host the VM runs on (None when down or unknown);
    `mac_in_use` whether another plugged NIC has this NIC's MAC."""
    action = "plug NIC" if params.plug else "unplug NIC"
    found: list[Reason] = []
    if vm.status not in common.PLUG_STATUSES:
        found.append(R.vm_status_illegal(vm.name, vm.status, common.PLUG_STATUSES, action))
    if device.plug_state != "stable":
        found.append(R.device_in_flight(device.id, device.plug_state))
    elif params.plug and device.is_plugged:
        found.append(R.nic_already_plugged(nic.name))
    elif not params.plug and not device.is_plugged:
        found.append(R.nic_already_unplugged(nic.name))
    if params.plug and mac_in_use:
        found.append(R.mac_in_use(nic.mac))
    if vm.status == common.UP:
        found += common.check_live_nic_hotplug(vm, cluster, host, nic.network if params.plug else None)
    return found


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params) -> Outcome:
    action = "plug" if params.plug else "unplug"
    failed_code = "NIC_PLUG_FAILED" if params.plug else "NIC_UNPLUG_FAILED"
    try:
        with sessions.begin() as s:
            vm = common.load_vm(s, params.vm_id)
            nic = common.load_nic(s, vm, params.nic_id)
            device = nic.device
            cluster = clusters.get(s, vm.cluster_id)
            host = common.load_host(s, vm) if vm.status == common.UP else None
            taken = params.plug and nics.mac_in_use(s, nic.mac, exclude_nic_id=nic.id)
            found = validate(params, vm=vm, nic=nic, device=device, cluster=cluster, host=host, mac_in_use=taken)
            if found:
                raise common.refusal(found, f"Cannot {action} NIC {nic.name} of VM {vm.name}.")

            if vm.status == common.DOWN:
                # Database only; the next run sends plugged NICs. Unplug forgets the address.
                if not devices.set_plugged(s, device.id, params.plug,
                                           address=devices.KEEP if params.plug else None):
                    raise Conflict(f"Cannot {action} NIC {nic.name}: another operation is in flight.",
                                   reasons=[R.device_in_flight(device.id, "in flight")])
                audit.record(s, "NIC_PLUGGED" if params.plug else "NIC_UNPLUGGED",
                             f"NIC {nic.name} {'activated' if params.plug else 'deactivated'} on VM {vm.name} "
                             f"(VM is down: applied at its next start)", vm_id=vm.id, device_id=device.id,
                             nic=nic.name)
                return Outcome(id=nic.id)

            assert host is not None  # validate refused a running VM without a host
            payload = common.nic_params(device, nic, with_address=False) if params.plug \
                else common.nic_ref(device, nic)
            before = common.begin(s, device, "plugging" if params.plug else "unplugging", f"{action} NIC")
            call = common.LiveCall(vm_id=vm.id, vm_name=vm.name, device_id=device.id, nic_name=nic.name,
                                   host=host, before=before)
    except (ValidationFailed, Conflict) as err:
        common.audit_refusal(sessions, failed_code, f"Cannot {action} NIC {params.nic_id}", err,
                             vm_id=params.vm_id, device_id=params.nic_id)
        raise
    if params.plug:
        return common.plug_live(sessions, hosts, call, payload)
    return common.unplug_live(sessions, hosts, call, payload)
