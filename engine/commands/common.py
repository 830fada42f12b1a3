"""What the command modules share: VM status sets, the refusal at the edge, the checks every NIC
hot-plug makes, the NIC dictionary sent to the agent, and the live plug/unplug state machine."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from engine import osinfo, scheduler
from engine.commands import reasons as R
from engine.commands.outcome import Outcome
from engine.dao import audit, devices, hosts as hosts_dao, nics as nics_dao, vms as vms_dao
from engine.dao.models import Cluster, Host, Vm, VmDevice, VmNic
from engine.errors import (Conflict, EngineError, HostCallFailed, HostUnreachable, NotFound, Reason,
                           ValidationFailed)
from engine.hostclient import HostClientFactory

# The agent's "device not found" (schema/errors.yaml deviceNotFound).
DEVICE_NOT_FOUND = 304

DOWN = "down"
UP = "up"
# Device plug/unplug is allowed on a VM that is down (database only) or up (through the host).
PLUG_STATUSES = (DOWN, UP)
# Statuses in which the VM's domain exists on a host: "running" for the canDo rules.
RUNNING_STATUSES = ("up", "paused", "powering_up", "powering_down", "unknown")

MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
NETWORK_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
NIC_DEVICES = ("bridge", "network", "vnlink", "bridgeless")
NIC_SPEC_PARAMS = ("vlan", "portProfile", "mtu")
PCI_ADDRESS_KEYS = ("type", "domain", "bus", "slot", "function", "multifunction")

Sessions = sessionmaker[Session]


def is_running(vm: Vm) -> bool:
    return vm.status in RUNNING_STATUSES


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


# ---- refusing, once, at the edge ------------------------------------------------------------------

def refusal(reasons: list[Reason], message: str) -> EngineError:
    """The error for a failed canDo: Conflict (OPERATION_IN_FLIGHT) when a device operation is in
    flight -- the same answer a lost compare-and-set gets -- else ValidationFailed. All reasons are
    attached either way."""
    if any(r.code == R.DEVICE_IN_FLIGHT for r in reasons):
        return Conflict(message, reasons=reasons)
    return ValidationFailed(message, reasons=reasons)


def audit_refusal(sessions: Sessions, code: str, message: str, err: EngineError, *, vm_id: str | None = None,
                  device_id: str | None = None, host_id: str | None = None) -> None:
    """Record a refused or failed action in its own transaction (the action's own was rolled back)."""
    with sessions.begin() as s:
        audit.record(s, code, f"{message}: {err.message}", severity="warning", vm_id=vm_id,
                     device_id=device_id, host_id=host_id, host_code=err.host_code,
                     host_message=err.host_message, reasons=[r.to_dict() for r in err.reasons],
                     fault=err.code)


# ---- shared checks --------------------------------------------------------------------------------

def check_mac_format(mac: str) -> list[Reason]:
    """A unicast MAC in colon form (the agent's schema and libvirt want exactly that)."""
    if not MAC_RE.match(mac or "") or int(mac[:2], 16) & 1:
        return [R.mac_invalid(mac)]
    return []


def check_network_name(network: str) -> list[Reason]:
    return [] if NETWORK_RE.match(network or "") else [R.network_name_invalid(network)]


def host_has_network(capabilities: dict[str, Any] | None, network: str) -> bool:
    """Whether the host reported `network` as a Linux bridge or a libvirt network (lists or maps)."""
    return scheduler.has_networks(capabilities, [network])


def check_live_nic_hotplug(vm: Vm, cluster: Cluster | None, host: Host | None, network: str | None) -> list[Reason]:
    """The checks of plugging (or unplugging, network=None) a NIC on a running VM: the guest OS, the
    cluster's compatibility version, the host, and the network on that host."""
    found: list[Reason] = []
    if not osinfo.os_supports(vm.os_type, osinfo.NIC_HOTPLUG):
        found.append(R.os_nic_hotplug_unsupported(vm.name, vm.os_type))
    if cluster is not None and not osinfo.cluster_supports(osinfo.NIC_HOTPLUG, cluster.compat_version):
        minimum = ".".join(str(p) for p in osinfo.FEATURE_MIN_CLUSTER_VERSION[osinfo.NIC_HOTPLUG])
        found.append(R.cluster_version_unsupported(cluster.name, cluster.compat_version, minimum))
    if host is None:
        found.append(R.host_not_found(vm.run_on_host))
    elif network is not None and not host_has_network(host.capabilities, network):
        found.append(R.network_not_on_host(network, host.name))
    return found


# ---- what the agent gets --------------------------------------------------------------------------

def pci_address(address: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stored address in the shape schema/verbs.yaml `pciAddress` accepts, or None if it is not PCI."""
    if not address or address.get("type", "pci") != "pci" or "slot" not in address:
        return None
    return {k: address[k] for k in PCI_ADDRESS_KEYS if k in address}


def nic_params(device: VmDevice, nic: VmNic, *, with_address: bool = True) -> dict[str, Any]:
    """The `nic` dictionary of schema/verbs.yaml for VM.create and VM.hotplugNic."""
    params: dict[str, Any] = {
        "type": "interface",
        "device": device.device if device.device in NIC_DEVICES else "bridge",
        "network": nic.network,
        "alias": device.alias,
        "macAddr": nic.mac,
        "nicModel": nic.model,
        "linkActive": bool(nic.linked),
    }
    address = pci_address(device.address) if with_address else None
    if address:
        params["address"] = address
    if device.boot_order:
        params["bootOrder"] = device.boot_order
    spec = {k: v for k, v in (device.spec_params or {}).items() if k in NIC_SPEC_PARAMS}
    if spec:
        params["specParams"] = spec
    if device.custom_properties:
        params["customProperties"] = {str(k): str(v) for k, v in device.custom_properties.items()}
    return params


def nic_ref(device: VmDevice, nic: VmNic) -> dict[str, Any]:
    """The `nicRef` of VM.hotunplugNic: by alias, with the MAC for the agent's logs."""
    return {"type": "interface", "alias": device.alias, "macAddr": nic.mac}


def host_error(err: EngineError, verb: str) -> dict[str, Any]:
    """The device's last_error after a failed host call."""
    return {"code": err.host_code, "message": err.host_message or err.message, "fault": err.code,
            "host": err.host, "verb": verb, "time": utc_now_iso()}


# ---- the live state machine -----------------------------------------------------------------------

@dataclass(frozen=True)
class Before:
    """A device as it was before a transition began: what an unreachable host rolls back to."""

    is_plugged: bool
    last_error: dict[str, Any] | None


@dataclass(frozen=True)
class LiveCall:
    """Everything a live NIC plug/unplug needs once the transition is committed (plain values: the
    rows are gone with their session)."""

    vm_id: str
    vm_name: str
    device_id: str
    nic_name: str
    host: Host
    before: Before


def begin(s: Session, device: VmDevice, to_state: str, action: str) -> Before:
    """Compare-and-set the device into `to_state`; Conflict (and nothing changed) when another
    operation won. Returns what the device was, for a rollback."""
    before = Before(is_plugged=bool(device.is_plugged), last_error=device.last_error)
    if not devices.begin_transition(s, device.id, to_state):
        raise Conflict(f"Cannot {action}: another operation is in flight on device {device.id}.",
                       reasons=[R.device_in_flight(device.id, "in flight")])
    return before


def rollback_unreachable(sessions: Sessions, call: LiveCall, from_state: str, err: HostUnreachable) -> None:
    """The host was never reached: put the device back exactly as it was. The request may have
    reached it but no answer came (err.outcome_unknown): the host may have acted, so the device stays
    in flight and the monitor's reconciliation settles it from the host's live devices."""
    with sessions.begin() as s:
        if not err.outcome_unknown:
            devices.finish_transition(s, call.device_id, from_state=from_state, is_plugged=call.before.is_plugged,
                                      address=devices.KEEP, error=call.before.last_error)
        note = (f"; whether it acted is unknown, NIC {call.nic_name} stays {from_state} until the host answers"
                if err.outcome_unknown else "")
        audit.record(s, "HOST_UNREACHABLE", f"Host {call.host.name} could not be reached: {err.message}{note}",
                     severity="error", vm_id=call.vm_id, device_id=call.device_id, host_id=call.host.id,
                     host=call.host.name)


def audit_vm_host_failure(s: Session, err: HostUnreachable | HostCallFailed, *, failed_code: str, action: str,
                          vm_id: str, vm_name: str, host: Host) -> None:
    """A VM-level host call (start, stop) failed: HOST_UNREACHABLE, or `failed_code` with the host's answer."""
    unreachable = isinstance(err, HostUnreachable)
    audit.record(s, "HOST_UNREACHABLE" if unreachable else failed_code,
                 f"Failed to {action} VM {vm_name} on host {host.name}: "
                 + (err.message if unreachable else f"host answered {err.host_code} {err.host_message}"),
                 severity="error", vm_id=vm_id, host_id=host.id, host_code=err.host_code,
                 host_message=err.host_message, host=host.name)


def _host_failed(sessions: Sessions, call: LiveCall, err: HostCallFailed, *, verb: str, from_state: str,
                 back_to_plugged: bool, code: str, action: str) -> None:
    """The host refused: the device goes back where it was, with the host's error kept on it."""
    with sessions.begin() as s:
        devices.finish_transition(s, call.device_id, from_state=from_state, is_plugged=back_to_plugged,
                                  address=devices.KEEP, error=host_error(err, verb))
        audit.record(s, code, f"Failed to {action} VM {call.vm_name}: host {call.host.name} answered "
                     f"{err.host_code} {err.host_message}", severity="error", vm_id=call.vm_id,
                     device_id=call.device_id, host_id=call.host.id, host_code=err.host_code,
                     host_message=err.host_message, nic=call.nic_name)


def _finished(sessions: Sessions, call: LiveCall, *, from_state: str, is_plugged: bool,
              new_address: dict[str, Any] | None, code: str, done_text: str, severity: str = "info",
              err: HostCallFailed | None = None, **details: Any) -> None:
    """The host did it: the transition ends. A row someone else settled meanwhile is only audited."""
    with sessions.begin() as s:
        done = devices.finish_transition(s, call.device_id, from_state=from_state, is_plugged=is_plugged,
                                         address=new_address, error=None)
        audit.record(s, code if done else "NIC_STATE_REPAIRED",
                     f"NIC {call.nic_name} {done_text}"
                     + ("" if done else " (the device's state had already been changed meanwhile)"),
                     severity=severity if done else "warning", vm_id=call.vm_id, device_id=call.device_id,
                     host_id=call.host.id, nic=call.nic_name,
                     host_code=err.host_code if err else None, host_message=err.host_message if err else None,
                     **details)


def plug_live(sessions: Sessions, hosts: HostClientFactory, call: LiveCall, nic: dict[str, Any]) -> Outcome:
    """The device is committed as 'plugging': call VM.hotplugNic, then finish the transition."""
    verb = "VM.hotplugNic"
    try:
        result = hosts(call.host).call(verb, {"vmId": call.vm_id, "nic": nic})
    except HostUnreachable as err:
        rollback_unreachable(sessions, call, "plugging", err)
        raise
    except HostCallFailed as err:
        _host_failed(sessions, call, err, verb=verb, from_state="plugging", back_to_plugged=False,
                     code="NIC_PLUG_FAILED", action=f"plug NIC {call.nic_name} into")
        raise
    address = (result or {}).get("address")
    _finished(sessions, call, from_state="plugging", is_plugged=True, new_address=address, code="NIC_PLUGGED",
              done_text=f"plugged into VM {call.vm_name} on host {call.host.name}", address=address)
    return Outcome(id=call.device_id)


def unplug_live(sessions: Sessions, hosts: HostClientFactory, call: LiveCall, ref: dict[str, Any]) -> Outcome:
    """The device is committed as 'unplugging': call VM.hotunplugNic, then finish the transition --
    or leave it in flight when the guest has not released the device yet (pending)."""
    verb = "VM.hotunplugNic"
    try:
        result = hosts(call.host).call(verb, {"vmId": call.vm_id, "nic": ref})
    except HostUnreachable as err:
        rollback_unreachable(sessions, call, "unplugging", err)
        raise
    except HostCallFailed as err:
        if err.host_code != DEVICE_NOT_FOUND:
            _host_failed(sessions, call, err, verb=verb, from_state="unplugging", back_to_plugged=True,
                         code="NIC_UNPLUG_FAILED", action=f"unplug NIC {call.nic_name} from")
            raise
        # The host has no such device: the goal of the unplug is already reached.
        _finished(sessions, call, from_state="unplugging", is_plugged=False, new_address=None, code="NIC_UNPLUGGED",
                  done_text=f"unplugged from VM {call.vm_name}: host {call.host.name} no longer had it",
                  severity="warning", err=err)
        return Outcome(id=call.device_id)
    if (result or {}).get("status") == "pending":
        with sessions.begin() as s:
            audit.record(s, "NIC_UNPLUG_PENDING",
                         f"NIC {call.nic_name} of VM {call.vm_name}: the guest has not released it yet; "
                         f"the unplug finishes when host {call.host.name} reports the removal",
                         severity="info", vm_id=call.vm_id, device_id=call.device_id, host_id=call.host.id,
                         nic=call.nic_name)
        return Outcome(id=call.device_id, pending=True)
    _finished(sessions, call, from_state="unplugging", is_plugged=False, new_address=None, code="NIC_UNPLUGGED",
              done_text=f"unplugged from VM {call.vm_name} on host {call.host.name}",
              elapsed=(result or {}).get("elapsed"))
    return Outcome(id=call.device_id)


def load_vm(s: Session, vm_id: str) -> Vm:
    vm = vms_dao.get(s, vm_id)
    if vm is None:
        raise NotFound(f"VM {vm_id} does not exist.")
    return vm


def load_nic(s: Session, vm: Vm, nic_id: str) -> VmNic:
    nic = nics_dao.get(s, vm.id, nic_id)
    if nic is None:
        raise NotFound(f"NIC {nic_id} of VM {vm.name} does not exist.")
    return nic


def load_host(s: Session, vm: Vm) -> Host | None:
    return hosts_dao.get(s, vm.run_on_host) if vm.run_on_host else None
