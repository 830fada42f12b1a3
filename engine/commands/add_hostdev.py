"""Attach a USB host device of the inventory to a VM (seed 001's attach_usb_devices, seed 002's hot
and cold plug). Raw assignment is for admins. Running VM: claimed (a compare-and-set, so two requests
for one device never both win), plugged live through the device core, allocated once the host has it;
a failed plug gives the device back with the error kept on both rows. Stopped VM: a change of its
definition only -- the device is allocated to it at once, and pins the VM to the device's host.

Each device has a startup policy: optional (the default, as Incus has it: a VM starts without a device
that was pulled) or required (the start is refused while the device is missing).
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine import reasons as R
from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common, hostdev_rules
from engine.commands.outcome import Outcome
from engine.dao import audit, devices, host_devices
from engine.dao.models import HostDevice, Vm
from engine.devices import kinds, live, state
from engine.errors import Conflict, Reason
from engine.hostclient import HostClientFactory
from engine.vocab import MANDATORY, OPTIONAL, PLUG_STATUSES, UP

#: startup policy -> libvirt's startupPolicy on the hostdev's source.
STARTUP_POLICIES = {False: OPTIONAL, True: MANDATORY}


@dataclass(frozen=True)
class Params:
    vm_id: str
    host_device_id: int
    required: bool = False          # the VM may not start without it
    active: bool = True             # plugged (now if the VM runs, else at its next start)


def validate(params: Params, *, vm: Vm, hd: HostDevice | None, device_reasons: list[Reason]) -> list[Reason]:
    """canDo of AddHostdev. `device_reasons`: hostdev_rules.check of the device for this VM."""
    found = list(device_reasons)
    if params.active and vm.status not in PLUG_STATUSES:
        found.append(R.vm_status_illegal(vm.name, vm.status, PLUG_STATUSES, "attach a host device"))
    return found


def _device(s: Session, params: Params) -> HostDevice | None:
    return host_devices.get(s, params.host_device_id) if isinstance(params.host_device_id, int) else None


def check(s: Session, vm: Vm, params: Params) -> list[Reason]:
    """canDo with its inputs read from the database (what execute checks; nothing changes)."""
    hd = _device(s, params)
    return validate(params, vm=vm, hd=hd, device_reasons=hostdev_rules.check(s, vm, hd, params.host_device_id))


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    with common.audited(sessions, kinds.HOSTDEV.audit("ADD"), vm_id=params.vm_id):
        common.require_admin(principal, "assign a host device to a VM")
        with sessions.begin() as s:
            vm = common.load_vm(s, principal, params.vm_id, for_update=True)
            found = check(s, vm, params)
            if found:
                raise common.refusal(found, f"Cannot attach host device {params.host_device_id} to VM {vm.name}.")
            hd = _device(s, params)
            assert hd is not None
            live_plug = params.active and vm.status == UP
            host = common.running_host(s, vm) if live_plug else None
            spec = {"source": hostdev_rules.source(hd), "startupPolicy": STARTUP_POLICIES[params.required]}
            # Read before the insert: a failed flush rolls the transaction back and expires every row,
            # and reading one then is an error of its own that would hide the conflict.
            hd_id, label = hd.id, hostdev_rules.label(hd)
            try:        # the unique link decides between two requests that both passed the checks
                dev = devices.add(s, vm.id, type=kinds.HOSTDEV.type, device="usb",
                                  is_plugged=params.active and not live_plug, spec_params=spec, host_device_id=hd_id)
            except IntegrityError as err:
                with sessions() as fresh:       # or the device went with its host meanwhile
                    gone = host_devices.get(fresh, hd_id) is None
                reason = R.host_device_not_found(hd_id) if gone else R.host_device_busy(label, "attached to a VM")
                raise Conflict(f"Cannot attach host device {hd_id}: {reason.message}", reasons=[reason]) from err
            audit.record(s, kinds.HOSTDEV.audit("ADDED"), f"Host device {label} attached to VM "
                         f"{vm.name}" + ("" if live_plug else " (its definition; applied at its next start)"),
                         vm_id=vm.id, device_id=dev.id, host_device_id=hd_id, required=params.required)
            subject = state.Subject.of(dev, vm, host)
            if not live_plug:
                if params.active:       # one VM per device: the claim's compare-and-set decides
                    state.claim_for_next_start(s, subject, dev)
                return Outcome(id=dev.id, created=True)
            assert host is not None
            call = live.prepare(s, dev, subject, host, plug=True)
    return Outcome(id=call.subject.device_id, created=True, pending=live.run(sessions, hosts, call))
