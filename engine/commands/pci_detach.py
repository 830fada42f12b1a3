"""Detach one PCI device from a VM (seed 003's DELETE os-pci_attachments/{attachment_id}): its row goes
and the device goes back to its host, its IOMMU group settled (engine.devices.claims.release). Members
may, as they attach (pci_attach).

Running VM with the device plugged: a live unplug through the device core, the row marked for detach
so that it goes with its device. The agent waits for the guest as it does for a NIC: when the guest
is slow the answer is pending, the row stays 'unplugging' and goes when the host reports the removal.
A refused unplug leaves the device plugged (the mark taken off). Otherwise -- a stopped VM's
definition, or a row off the wire -- the row is removed at once, as every kind's is
(common.remove_device).
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine import reasons as R
from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common, pci_rules
from engine.commands.outcome import Outcome
from engine.dao import devices
from engine.dao.models import Vm, VmDevice
from engine.devices import claims, kinds, live, state
from engine.errors import EngineError, HostUnreachable, NotFound, Reason
from engine.hostclient import HostClientFactory
from engine.vocab import PLUG_STATUSES, STABLE, UP


@dataclass(frozen=True)
class Params:
    vm_id: str
    attachment_id: str


def validate(params: Params, *, vm: Vm, device: VmDevice) -> list[Reason]:
    """canDo of PciDetach: no operation in flight on the device, and a plugged one only from a VM that
    is down (its definition) or up (a live unplug)."""
    if device.plug_state != STABLE:
        return [R.device_in_flight(device.id, device.plug_state)]
    if device.is_plugged and vm.status not in PLUG_STATUSES:
        return [R.vm_status_illegal(vm.name, vm.status, PLUG_STATUSES, "detach a PCI device")]
    return []


def load(s: Session, vm: Vm, attachment_id: str) -> VmDevice:
    """The VM's PCI device row; 404 for any other id (a USB device's row is not an attachment)."""
    dev = devices.get(s, attachment_id)
    if dev is None or dev.vm_id != vm.id or not pci_rules.is_pci(dev):
        reason = R.pci_attachment_not_found(attachment_id, vm.name)
        raise NotFound(reason.message, reasons=[reason])
    return dev


def check(s: Session, vm: Vm, params: Params) -> list[Reason]:
    """canDo with its inputs read from the database (what execute checks; nothing changes)."""
    return validate(params, vm=vm, device=load(s, vm, params.attachment_id))


def _live(vm: Vm, dev: VmDevice) -> bool:
    return vm.status == UP and bool(dev.is_plugged)


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    with sessions.begin() as s:     # which way; the way taken checks again under the VM's lock
        vm = common.load_vm(s, principal, params.vm_id)
        live_unplug = _live(vm, load(s, vm, params.attachment_id))
    if not live_unplug:
        return common.remove_device(sessions, vm_id=params.vm_id, device_id=params.attachment_id,
                                    kind=kinds.HOSTDEV, principal=principal,
                                    checks=lambda s, vm: check(s, vm, params))
    return _unplug(sessions, hosts, params, principal)


def _unplug(sessions: common.Sessions, hosts: HostClientFactory, params: Params, principal: Principal) -> Outcome:
    with common.audited(sessions, kinds.HOSTDEV.audit("UNPLUG"), vm_id=params.vm_id,
                        device_id=params.attachment_id):
        with sessions.begin() as s:
            vm = common.load_vm(s, principal, params.vm_id, for_update=True)
            dev = load(s, vm, params.attachment_id)
            found = validate(params, vm=vm, device=dev) or \
                ([] if _live(vm, dev) else [R.vm_status_illegal(vm.name, vm.status, (UP,), "unplug a PCI device "
                                                                "(the VM changed meanwhile; try again)")])
            if found:
                raise common.refusal(found, f"Cannot detach {kinds.HOSTDEV.describe(dev)} from VM {vm.name}.")
            host = common.running_host(s, vm)
            assert host is not None     # up: it runs somewhere
            claims.mark_detach(dev)
            call = live.prepare(s, dev, state.Subject.of(dev, vm, host), host, plug=False)
    try:
        pending = live.run(sessions, hosts, call)
    except EngineError as err:
        if not (isinstance(err, HostUnreachable) and err.outcome_unknown):     # still in flight: keep the mark
            with sessions.begin() as s:
                row = devices.get(s, params.attachment_id)
                if row is not None:
                    claims.mark_detach(row, False)
        raise
    return Outcome(id=params.attachment_id, pending=pending)
