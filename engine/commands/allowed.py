"""What a principal may do now with a VM and with each of its devices, and for every refused action
each reason: the answer of the commands' own `check()` -- the canDo their `execute` runs -- read in
one transaction that changes nothing. It backs GET /api/vms/{id}/allowed and the UI's buttons, so no
rule is written twice.

Actions that take input (a new NIC's name and network, a controller's model) are asked with input
that passes the input checks, so that what is left is what the VM's state allows: "can a NIC be
activated on this VM now", not "is this name free".
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import uuid4

from sqlalchemy.orm import Session

from engine import scheduler
from engine.auth import Principal
from engine import reasons as R
from engine.commands import (activate_host, add_controller, add_hostdev, add_nic, add_redirdev, common,
                             fence_host, host_maintenance, pci_attach, pci_detach, pci_rules, plug_unplug_hostdev,
                             plug_unplug_nic, plug_unplug_redirdev, remove_controller, remove_host, remove_hostdev,
                             remove_nic, remove_redirdev, remove_vm, run_vm, stop_vm, update_nic)
from engine.dao import devices, host_devices, pci_aliases, vms as vms_dao
from engine.dao.models import Host, Vm, VmDevice
from engine.devices import kinds, pcie_ports
from engine.errors import Reason
from engine.vocab import RUNNING_STATUSES

Verdict = dict[str, Any]

# The probe's input for actions that take some: valid, so that only the VM's state can refuse.
PROBE_CONTROLLER_MODEL = "qemu-xhci"
PROBE_REDIRDEV_TYPE = "spicevmc"
PROBE_PCI_ALIAS = "any"     # asked only when no alias is configured: the answer then says so


def verdict(reasons: list[Reason]) -> Verdict:
    return {"allowed": not reasons, "reasons": [r.to_dict() for r in reasons]}


def _probe_name() -> str:
    return f"probe-{uuid4().hex[:12]}"


def _probe_network(s: Session, vm: Vm) -> str:
    """A network a new active NIC could use: one of the running VM's host (none: the check says so)."""
    host = common.running_host(s, vm)
    known = sorted(scheduler.networks_of(host.capabilities if host else None))
    return known[0] if known else "default"


def _vm_actions(s: Session, vm: Vm, principal: Principal) -> dict[str, Verdict]:
    network = _probe_network(s, vm)
    # Which device is the dialog's choice; the VM's side of it is the same validate's, and raw
    # assignment is an admin's.
    admin = [] if principal.is_admin else [R.admin_required("assign a host device to a VM")]
    add_hostdev_state = add_hostdev.validate(add_hostdev.Params(vm.id, 0), vm=vm, hd=None, device_reasons=[])
    return {
        "add_hostdev": verdict(admin + add_hostdev_state),
        "start": verdict(run_vm.check(s, vm, run_vm.Params(vm.id))),
        "stop": verdict(stop_vm.check(s, vm, stop_vm.Params(vm.id))),
        "remove": verdict(remove_vm.check(s, vm, remove_vm.Params(vm.id))),
        "add_nic": verdict(add_nic.check(s, vm, add_nic.Params(vm.id, _probe_name(), network, active=False))),
        "add_active_nic": verdict(add_nic.check(s, vm, add_nic.Params(vm.id, _probe_name(), network))),
        "add_controller": verdict(add_controller.check(
            s, vm, add_controller.Params(vm.id, model=PROBE_CONTROLLER_MODEL))),
        "add_redirdev": verdict(add_redirdev.check(
            s, vm, add_redirdev.Params(vm.id, type=PROBE_REDIRDEV_TYPE, active=False))),
        "add_active_redirdev": verdict(add_redirdev.check(s, vm, add_redirdev.Params(vm.id, type=PROBE_REDIRDEV_TYPE))),
        "pci_attach": _pci_attach(s, vm),
    }


def _pci_attach(s: Session, vm: Vm) -> Verdict:
    """The VM's side of attaching one PCI device by alias (its status, a free PCIe port, an alias
    configured); which alias has devices free is the choice of the dialog, which asks pci_attach.check
    per alias."""
    names = pci_aliases.names(s)
    probe = pci_attach.Params(vm.id, min(names) if names else PROBE_PCI_ALIAS, 1)
    return verdict(pci_attach.validate(probe, vm=vm, configured=names, device_reasons=[],
                                       free_ports=pcie_ports.free(vm)))


def _nic(s: Session, vm: Vm, dev: VmDevice, principal: Principal) -> dict[str, Verdict]:
    host = common.running_host(s, vm)
    plug = {action: verdict(plug_unplug_nic.check(s, vm, dev, host, plug_unplug_nic.Params(vm.id, dev.id, on)))
            for action, on in (("activate", True), ("deactivate", False))}
    rename = update_nic.Params(vm.id, dev.id, name=_probe_name())
    return {**plug, "update": verdict(update_nic.check(s, vm, rename)),
            "remove": verdict(remove_nic.check(s, vm, remove_nic.Params(vm.id, dev.id)))}


def _redirdev(s: Session, vm: Vm, dev: VmDevice, principal: Principal) -> dict[str, Verdict]:
    host = common.running_host(s, vm)
    plug = {action: verdict(plug_unplug_redirdev.check(s, vm, dev, host,
                                                       plug_unplug_redirdev.Params(vm.id, dev.id, on)))
            for action, on in (("activate", True), ("deactivate", False))}
    return {**plug, "remove": verdict(remove_redirdev.check(s, vm, remove_redirdev.Params(vm.id, dev.id)))}


def _controller(s: Session, vm: Vm, dev: VmDevice, principal: Principal) -> dict[str, Verdict]:
    return {"remove": verdict(remove_controller.check(s, vm, remove_controller.Params(vm.id, dev.id)))}


def _hostdev(s: Session, vm: Vm, dev: VmDevice, principal: Principal) -> dict[str, Verdict]:
    """Raw host-device assignment is an admin's: a member is told so, besides what the VM's state says."""
    admin = [] if principal.is_admin else [R.admin_required("plug, unplug or detach a host device")]
    host = common.running_host(s, vm)
    plug = {action: verdict(admin + plug_unplug_hostdev.check(s, vm, dev, host,
                                                              plug_unplug_hostdev.Params(vm.id, dev.id, on)))
            for action, on in (("activate", True), ("deactivate", False))}
    out = {**plug, "remove": verdict(admin + remove_hostdev.check(s, vm, remove_hostdev.Params(vm.id, dev.id)))}
    if pci_rules.is_pci(dev):       # detached by its owner, as it was attached: by alias, members too
        out["detach"] = verdict(pci_detach.validate(pci_detach.Params(vm.id, dev.id), vm=vm, device=dev))
    return out


#: device kind -> the actions a device of that kind offers. A kind missing here offers none yet.
DeviceActions = Callable[[Session, Vm, VmDevice, Principal], dict[str, Verdict]]
DEVICE_ACTIONS: dict[kinds.DeviceKind, tuple[str, DeviceActions]] = {
    kinds.NIC: ("nic", _nic),
    kinds.REDIRDEV: ("redirdev", _redirdev),
    kinds.CONTROLLER: ("controller", _controller),
    kinds.HOSTDEV: ("hostdev", _hostdev),
}


def for_vm(sessions: common.Sessions, principal: Principal, vm_id: str) -> dict[str, Any]:
    """{"vm": {action: verdict}, "devices": {device id: {"kind": ..., action: verdict}}} for the VM the
    principal sees (another project's VM is not found, as everywhere)."""
    with sessions() as s:
        vm = common.load_vm(s, principal, vm_id)
        out: dict[str, Any] = {"vm": _vm_actions(s, vm, principal), "devices": {}}
        for dev in devices.list_for_vm(s, vm.id):
            entry = DEVICE_ACTIONS.get(kinds.of(dev))
            if entry is not None:
                name, actions = entry
                out["devices"][dev.id] = {"kind": name, **actions(s, vm, dev, principal)}
        s.rollback()        # nothing was written; end the read at once
        return out


def for_hosts(s: Session, hosts: Sequence[Host]) -> dict[str, dict[str, Verdict]]:
    """{host id: {action: verdict}} for hosts (an admin's): maintenance, activate, fence, remove, their
    inputs read for every host at once (two statements, whatever the number of hosts)."""
    ids = [h.id for h in hosts]
    running = vms_dao.list_on_hosts(s, ids, RUNNING_STATUSES)
    held = host_devices.held_on_hosts(s, ids)
    return {h.id: {
        "maintenance": verdict(host_maintenance.validate(host_maintenance.Params(h.id), host=h, running=running[h.id])),
        "activate": verdict(activate_host.validate(activate_host.Params(h.id), host=h)),
        "fence": verdict(fence_host.validate(fence_host.Params(h.id), host=h, running=running[h.id])),
        "remove": verdict(remove_host.validate(remove_host.Params(h.id), host=h, held=held[h.id])),
    } for h in hosts}
