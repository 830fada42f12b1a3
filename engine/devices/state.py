"""The plug state machine of every device kind, as named transitions (DESIGN.md's diagram).

Each transition is one compare-and-set on the row plus one audit record (written by the same
statement where the database allows it: dao._cas.OneRowUpdate), and returns whether it won;
a transition that lost (someone else settled the row first) writes nothing, so every outcome is
audited exactly once. `is_plugged` is the desired state: it takes its new value when a transition
begins and goes back only when the host refuses or is never reached. A kind's claim (a NIC's MAC) is
taken when the device is to be on the wire and given back when it is off it.

Commands, the monitor and the live runner call these; none of them writes a plug state itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine import reasons as R
from engine.dao import audit, devices, vms as vms_dao
from engine.dao.models import Host, Vm, VmDevice
from engine.dao.vm_versions import VmVersion
from engine.devices import claims, kinds
from engine.devices.kinds import DeviceKind
from engine.errors import Conflict, EngineError
from engine.vocab import DOWN, PLUGGING, RUNNING_STATUSES, UNPLUGGING


@dataclass(frozen=True)
class Subject:
    """A device as the audit log names it: plain values, usable after the rows' session is gone."""

    kind: DeviceKind
    device_id: str
    alias: str
    name: str
    vm_id: str
    vm_name: str
    host_id: str | None = None
    host_name: str | None = None

    @classmethod
    def of(cls, dev: VmDevice, vm: Vm, host: Host | None = None) -> "Subject":
        kind = kinds.of(dev)
        return cls(kind=kind, device_id=dev.id, alias=dev.alias, name=kind.name(dev), vm_id=vm.id,
                   vm_name=vm.name, host_id=host.id if host else None, host_name=host.name if host else None)

    @property
    def label(self) -> str:
        return f"{self.kind.label} {self.name}"

    def event(self, suffix: str, message: str, *, severity: str = "info", err: EngineError | None = None,
              **vars: Any) -> audit.Event:
        """The audit event of this device's `suffix` (the kind's code + suffix), as audit.event."""
        return audit.event(self.kind.audit(suffix), message, severity=severity, vm_id=self.vm_id,
                           device_id=self.device_id, host_id=self.host_id,
                           host_code=err.host_code if err else None,
                           host_message=err.host_message if err else None,
                           alias=self.alias, **{self.kind.code.lower(): self.name}, **vars)

    def record(self, s: Session, suffix: str, message: str, **kwargs: Any) -> None:
        self.event(suffix, message, **kwargs).write(s)


@dataclass(frozen=True)
class Before:
    """A device as it was before a transition began: what an unreachable host rolls back to."""

    is_plugged: bool
    last_error: dict[str, Any] | None = field(default=None)


def _row(s: Session, subject: Subject) -> VmDevice:
    dev = devices.get(s, subject.device_id)
    assert dev is not None, f"device {subject.device_id} vanished inside its own transaction"
    return dev


def claim(s: Session, subject: Subject, dev: VmDevice) -> None:
    """Take the kind's claim; a lost claim refuses the whole transaction with its reasons."""
    if subject.kind.claim is None:
        return
    lost = subject.kind.claim(s, dev)
    if lost:
        raise Conflict(f"Cannot plug {subject.label}: {lost[0].message}", reasons=lost)


def claim_for_next_start(s: Session, subject: Subject, dev: VmDevice) -> None:
    """A stopped VM's device that is to be plugged at its next start: its claim is taken and, being in
    the VM's definition, it counts as allocated at once (a host device: attached)."""
    claim(s, subject, dev)
    if subject.kind.allocated is not None:
        subject.kind.allocated(s, subject.device_id)


def _release(s: Session, subject: Subject, error: dict[str, Any] | None = None) -> None:
    subject.kind.give_back(s, subject.device_id, error)


def _finish(s: Session, subject: Subject, *, give_back: bool, released_error: dict[str, Any] | None = None,
            **finish: Any) -> bool:
    """devices.finish_transition; with `give_back`, the kind's claim goes back with a transition that
    wins: its release_row in the transition's own statement, its release hook after it (given
    `released_error`, a failed plug's)."""
    if not devices.finish_transition(s, subject.device_id, also=subject.kind.released_with_transition if give_back
                                     else (), **finish):
        return False
    if give_back and subject.kind.release is not None:
        subject.kind.release(s, subject.device_id, released_error)
    return True


def _unreachable_event(subject: Subject, message: str) -> audit.Event:
    return audit.event("HOST_UNREACHABLE", message, severity="error", vm_id=subject.vm_id,
                       device_id=subject.device_id, host_id=subject.host_id, host=subject.host_name)


# ---- a command's transitions -----------------------------------------------------------------------

class ReadAgain(Exception):
    """A begin from an unlocked read (begin's `unchanged`) did not take place: the VM's device set may
    have changed since the read, or the device's state did. Nothing was changed; the caller reads again
    with the VM locked."""


def begin(s: Session, subject: Subject, *, plug: bool, unchanged: VmVersion | None = None) -> Before:
    """stable -> plugging | unplugging (to be committed before the host is called). Conflict, and
    nothing changed, when another operation is in flight or the claim is lost. `unchanged`: the VM was
    read without a lock (devices.begin_transition); ReadAgain when that read is no longer current."""
    assert unchanged is None or subject.kind.begins_in_one_statement(plug), "an unlocked begin is one statement"
    dev = _row(s, subject)
    before = Before(is_plugged=bool(dev.is_plugged), last_error=dev.last_error)
    row_claim = subject.kind.claim_row if plug else None
    # Said before the statement: after a failed one, PostgreSQL reads nothing more in this transaction.
    lost = row_claim.lost(dev) if row_claim is not None else []
    try:
        began = devices.begin_transition(s, subject.device_id, PLUGGING if plug else UNPLUGGING,
                                         also=(row_claim.write,) if row_claim is not None else (),
                                         unchanged=unchanged)
    except IntegrityError:
        if row_claim is None:
            raise
        # Taken by another since the command's check: refused whole (the caller rolls back).
        raise Conflict(f"Cannot plug {subject.label}: {lost[0].message}", reasons=lost) from None
    if not began and unchanged is not None:
        raise ReadAgain(subject.device_id)
    if not began:
        raise Conflict(f"Cannot {'plug' if plug else 'unplug'} {subject.label}: another operation is in "
                       f"flight on it.", reasons=[R.device_in_flight(subject.device_id, "in flight")])
    if plug and row_claim is None:
        claim(s, subject, dev)
    return before


def desired(s: Session, subject: Subject, *, plug: bool) -> None:
    """The VM is down: only the desired state changes, applied at its next start. Unplugging forgets
    the address, so that the next plug gets a fresh one and addresses never collide."""
    if not devices.set_plugged(s, subject.device_id, plug, address=devices.KEEP if plug else None):
        raise Conflict(f"Cannot {'plug' if plug else 'unplug'} {subject.label}: another operation is in "
                       f"flight on it.", reasons=[R.device_in_flight(subject.device_id, "in flight")])
    if plug:
        claim_for_next_start(s, subject, _row(s, subject))
    else:
        _release(s, subject)
    subject.record(s, "PLUGGED" if plug else "UNPLUGGED",
                   f"{subject.label} {'activated' if plug else 'deactivated'} on VM {subject.vm_name} "
                   "(VM is down: applied at its next start)")


def plugged(s: Session, subject: Subject, address: dict[str, Any] | None, *, why: str = "", **vars: Any) -> bool:
    """plugging -> plugged, with the address the host reported."""
    event = subject.event("PLUGGED", f"{subject.label} plugged into VM {subject.vm_name} on host "
                          f"{subject.host_name}{why}", address=address, **vars)
    if not devices.finish_transition(s, subject.device_id, from_state=PLUGGING, is_plugged=True,
                                     address=address, event=event):
        return False
    if subject.kind.allocated is not None:
        subject.kind.allocated(s, subject.device_id)
    return True


def plug_failed(s: Session, subject: Subject, error: dict[str, Any], message: str, *,
                err: EngineError | None = None, severity: str = "error", **vars: Any) -> bool:
    """plugging -> unplugged, the error kept on the row."""
    return _finish(s, subject, give_back=True, released_error=error, from_state=PLUGGING, is_plugged=False,
                   error=error, event=subject.event("PLUG_FAILED", message, severity=severity, err=err, **vars))


def unplugged(s: Session, subject: Subject, *, why: str = "", severity: str = "info",
              err: EngineError | None = None, **vars: Any) -> bool:
    """unplugging -> unplugged, the address cleared (the guest no longer has the device)."""
    event = subject.event("UNPLUGGED", f"{subject.label} unplugged from VM {subject.vm_name}"
                          + (f" on host {subject.host_name}" if subject.host_name and not why else "") + why,
                          severity=severity, err=err, **vars)
    return _finish(s, subject, give_back=True, from_state=UNPLUGGING, is_plugged=False, address=None, event=event)


def unplug_failed(s: Session, subject: Subject, error: dict[str, Any], message: str, *,
                  address: dict[str, Any] | None | Any = devices.KEEP, err: EngineError | None = None,
                  severity: str = "error", **vars: Any) -> bool:
    """unplugging -> plugged again (the host or the guest kept the device), the error kept."""
    return devices.finish_transition(s, subject.device_id, from_state=UNPLUGGING, is_plugged=True,
                                     address=address, error=error,
                                     event=subject.event("UNPLUG_FAILED", message, severity=severity, err=err,
                                                         **vars))


def unplug_pending(s: Session, subject: Subject) -> None:
    """The guest has not released the device yet: the row stays unplugging, acknowledged by the host
    (reconciliation then waits for the guest, up to stale_after, instead of sending it again)."""
    devices.acknowledge(s, subject.device_id, from_state=UNPLUGGING, event=subject.event(
        "UNPLUG_PENDING", f"{subject.label} of VM {subject.vm_name}: the guest has not released it yet; the "
        f"unplug finishes when host {subject.host_name} reports the removal"))


def rolled_back(s: Session, subject: Subject, *, plug: bool, before: Before, message: str) -> bool:
    """The host was never reached: the device is put back exactly as it was."""
    return _finish(s, subject, give_back=plug and not before.is_plugged,
                   from_state=PLUGGING if plug else UNPLUGGING, is_plugged=before.is_plugged,
                   address=devices.KEEP, error=before.last_error, event=_unreachable_event(subject, message))


def host_silent(s: Session, subject: Subject, message: str, *, plug: bool) -> None:
    """The request may have reached the host but no answer came: the row stays in flight, marked
    unanswered, and reconciliation settles it against the host's truth (or sends it again) as soon as
    the host answers, without waiting for a command that is over."""
    error = {"code": None, "message": message, "host": subject.host_name, UNANSWERED: True}
    devices.mark_unanswered(s, subject.device_id, from_state=PLUGGING if plug else UNPLUGGING, error=error,
                            event=_unreachable_event(subject, message))


#: The key of last_error that marks an in-flight row whose host call got no answer.
UNANSWERED = "unanswered"


def unanswered(dev: VmDevice) -> bool:
    return bool(dev.last_error and dev.last_error.get(UNANSWERED))


def resent(s: Session, subject: Subject, *, plug: bool, why: str) -> bool:
    """An in-flight transition the host never acknowledged is sent to it again: its clock restarts."""
    if not devices.restart_transition(s, subject.device_id, from_state=PLUGGING if plug else UNPLUGGING):
        return False
    subject.record(s, "PLUG_RETRIED" if plug else "UNPLUG_RETRIED",
                   f"{'Plug' if plug else 'Unplug'} of {subject.label} {'into' if plug else 'from'} VM "
                   f"{subject.vm_name} sent to host {subject.host_name} again: {why}", severity="warning")
    return True


# ---- what the monitor finds ---------------------------------------------------------------------

def repaired(s: Session, subject: Subject, *, plug: bool, address: dict[str, Any] | None) -> bool:
    """A stable row disagreed with the host: it takes the host's word."""
    if not devices.set_plugged(s, subject.device_id, plug, address=address):
        return False
    lost: list[Any] = []
    if not plug:
        _release(s, subject)
    elif subject.kind.claim is not None:
        # The host has it on the wire whatever the claim says: a lost claim is only reported, in a
        # savepoint, so that this transaction goes on even when the claim's statement failed.
        savepoint = s.begin_nested()
        lost = subject.kind.claim(s, _row(s, subject))
        (savepoint.rollback if lost else savepoint.commit)()
    subject.record(s, "STATE_REPAIRED", f"{subject.label} of VM {subject.vm_name} marked "
                   f"{'plugged' if plug else 'unplugged'}: host {subject.host_name} "
                   f"{'has' if plug else 'does not have'} it" + (f" ({lost[0].message})" if lost else ""),
                   severity="warning", plugged=plug, address=address)
    return True


def vm_stopped(s: Session, vm: Vm, message: str, *, expected: tuple[str, ...] = RUNNING_STATUSES,
               host: Host | None = None, severity: str = "info", **vars: Any) -> bool:
    """The VM went down, however it happened (a stop, a crash, a host that no longer has it): status
    down, no host, one VM_STOPPED record, and every device transition in flight ends -- an unplug has
    completed (the device went with the domain), a plug has not. Addresses of plugged devices are kept
    for the next run. False, and nothing changed, when the VM was not in an `expected` status."""
    if not vms_dao.set_status_cas(s, vm.id, expected, DOWN, run_on_host=None):
        return False
    vms_dao.set_run_event_seq(s, vm.id, None)
    vms_dao.set_pcie_ports_base(s, vm.id, None)
    audit.record(s, "VM_STOPPED", message, severity=severity, vm_id=vm.id, host_id=host.id if host else None,
                 **vars)
    for dev in devices.list_in_flight(s, vm_id=vm.id):
        gone_with_vm(s, Subject.of(dev, vm, host), dev.plug_state, "the VM stopped")
    claims.drop_for_run(s, vm.id)      # a flavor's PCI devices last one run
    return True


def gone_with_vm(s: Session, subject: Subject, plug_state: str, why: str, *, severity: str = "info") -> bool:
    """A transition in flight on a VM that is no longer running ends: an unplug has completed (the
    device went with the domain), a plug has not."""
    if plug_state == UNPLUGGING:
        return unplugged(s, subject, why=f": {why}", severity=severity)
    return plug_failed(s, subject, {"code": None, "message": "the VM stopped before the plug completed"},
                       f"Plug of {subject.label} into VM {subject.vm_name} did not complete: {why}",
                       severity="warning")

