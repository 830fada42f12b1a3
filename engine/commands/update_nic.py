"""Change a NIC's name, network, model, MAC or link state.

On a running VM a plugged NIC cannot change (deactivate it first) -- except its link state, which
goes live through VM.updateNic. Everything else, and every change of an unplugged NIC or of a NIC
of a VM that is down, is a database change applied at the next plug or start.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common
from engine import reasons as R
from engine.commands.outcome import Outcome
from engine.dao import audit, nics
from engine.dao.models import NIC_MODELS, Host, Vm, VmDevice, VmNic
from engine.errors import Conflict, HostCallFailed, HostUnreachable, Reason, ValidationFailed
from engine.hostclient import HostClientFactory
from engine.vocab import STABLE, UP

FIELDS = ("name", "network", "model", "mac", "linked")


@dataclass(frozen=True)
class Params:
    vm_id: str
    nic_id: str
    name: str | None = None
    network: str | None = None
    model: str | None = None
    mac: str | None = None
    linked: bool | None = None


def changes(params: Params, nic: VmNic) -> dict[str, Any]:
    """The fields the request sets to a value different from the NIC's."""
    out: dict[str, Any] = {}
    for f in FIELDS:
        value = getattr(params, f)
        if value is None:
            continue
        current = getattr(nic, f)
        if f == "mac":
            value = nics.normalize_mac(value)
        if value != current:
            out[f] = value
    return out


def validate(params: Params, *, vm: Vm, nic: VmNic, device: VmDevice, name_in_use: bool,
             mac_in_use: bool) -> list[Reason]:
    """canDo of UpdateNic. `name_in_use`: another NIC of the VM has the new name; `mac_in_use`:
    another plugged NIC has the new MAC."""
    found: list[Reason] = []
    wanted = changes(params, nic)
    if device.plug_state != STABLE:
        found.append(R.device_in_flight(device.id, device.plug_state))
    if common.is_running(vm) and device.is_plugged:
        if set(wanted) - {"linked"}:
            found.append(R.nic_plugged_on_running_vm(nic.name, vm.name, "update"))
        elif "linked" in wanted and vm.status != UP:
            found.append(R.vm_status_illegal(vm.name, vm.status, (UP,), "change the link state"))
    if "name" in wanted:
        bad_name = common.check_name("NIC", wanted["name"])
        found += bad_name
        if not bad_name and name_in_use:
            found.append(R.name_in_use("NIC", wanted["name"]))
    if "network" in wanted:
        found += common.check_network_name(wanted["network"])
    if "model" in wanted and wanted["model"] not in NIC_MODELS:
        found.append(R.nic_model_unsupported(wanted["model"], NIC_MODELS))
    if "mac" in wanted:
        bad_mac = common.check_mac_format(params.mac or "")
        found += bad_mac
        if not bad_mac and device.is_plugged and mac_in_use:
            found.append(R.mac_in_use(wanted["mac"]))
    return found


def _taken(s: Session, vm: Vm, nic: VmNic, params: Params) -> dict[str, bool]:
    """validate()'s name_in_use and mac_in_use for the changes asked."""
    wanted = changes(params, nic)
    name_taken = "name" in wanted and common.name_ok(wanted["name"]) \
        and nics.name_in_use(s, vm.id, wanted["name"], exclude_nic_id=nic.id)
    mac_taken = "mac" in wanted and not common.check_mac_format(params.mac or "") \
        and nics.mac_in_use(s, wanted["mac"], exclude_nic_id=nic.id)
    return {"name_in_use": name_taken, "mac_in_use": mac_taken}


def check(s: Session, vm: Vm, params: Params) -> list[Reason]:
    """canDo with its inputs read from the database (what execute checks; nothing changes)."""
    nic = common.load_nic(s, vm, params.nic_id)
    return validate(params, vm=vm, nic=nic, device=nic.device, **_taken(s, vm, nic, params))


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    with common.audited(sessions, "NIC_UPDATE", vm_id=params.vm_id, device_id=params.nic_id), \
            common.unique_name("NIC", params.name or ""):
        with sessions.begin() as s:
            vm = common.load_vm(s, principal, params.vm_id)
            nic = common.load_nic(s, vm, params.nic_id)
            device = nic.device
            wanted = changes(params, nic)
            found = validate(params, vm=vm, nic=nic, device=device, **_taken(s, vm, nic, params))
            if found:
                raise common.refusal(found, f"Cannot update NIC {nic.name} of VM {vm.name}.")
            live = "linked" in wanted and vm.status == UP and device.is_plugged
            if not live:
                for key, value in wanted.items():
                    setattr(nic, key, value)
                if "mac" in wanted and nic.claimed_mac is not None:
                    s.flush()
                    if not nics.claim_mac(s, nic.id):     # a plugged NIC's claim follows its MAC
                        raise Conflict(f"Cannot update NIC {nic.name}: MAC {nic.mac} is in use.",
                                       reasons=[R.mac_in_use(nic.mac)])
                if wanted:
                    audit.record(s, "NIC_UPDATED", f"NIC {nic.name} of VM {vm.name} updated",
                                 vm_id=vm.id, device_id=nic.id, nic=nic.name, changes=wanted)
                return Outcome(id=nic.id)
            host = common.load_host(s, vm)
            if host is None:
                raise ValidationFailed(f"Cannot update NIC {nic.name}: the host of VM {vm.name} is unknown.",
                                       reasons=[R.host_not_found(vm.run_on_host)])
            ids = (vm.id, vm.name, nic.id, nic.name, device.alias)
    return _link_live(sessions, hosts, host, ids, bool(wanted["linked"]))


def _link_live(sessions: common.Sessions, hosts: HostClientFactory, host: Host,
               ids: tuple[str, str, str, str, str], linked: bool) -> Outcome:
    vm_id, vm_name, nic_id, nic_name, alias = ids
    state = "up" if linked else "down"
    try:
        hosts(host).call("VM.updateNic", {"vmId": vm_id, "nic": {"alias": alias, "linkActive": linked}})
    except HostUnreachable as err:
        with sessions.begin() as s:
            audit.record(s, "HOST_UNREACHABLE", f"Host {host.name} could not be reached: {err.message}",
                         severity="error", vm_id=vm_id, device_id=nic_id, host_id=host.id, host=host.name)
        raise
    except HostCallFailed as err:
        with sessions.begin() as s:
            audit.record(s, "NIC_UPDATE_FAILED",
                         f"Failed to set the link of NIC {nic_name} of VM {vm_name} {state}: host {host.name} "
                         f"answered {err.host_code} {err.host_message}", severity="error", vm_id=vm_id,
                         device_id=nic_id, host_id=host.id, host_code=err.host_code,
                         host_message=err.host_message, nic=nic_name)
        raise
    with sessions.begin() as s:
        nic = nics.get(s, vm_id, nic_id)
        if nic is not None:
            nic.linked = linked
        audit.record(s, "NIC_UPDATED", f"Link of NIC {nic_name} of VM {vm_name} set {state} on host {host.name}",
                     vm_id=vm_id, device_id=nic_id, host_id=host.id, nic=nic_name, changes={"linked": linked})
    return Outcome(id=nic_id)
