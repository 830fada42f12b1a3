"""Bringing device rows to a host's truth (VM.list for a host, VM.getDevices for one VM), through the
named transitions of engine.devices.state. Per device of a VM the database says runs on the host, compared by alias:

    unplugging, gone                      -> unplugged (whatever its age: the goal is reached)
    plugging,   present                   -> plugged with the live address (likewise)
    unplugging, present, pending in guest -> plugged again once older than `stale_after`, else left
    in flight, no longer its command's    -> sent to the host again (state.resent, live.resume)
    in flight, its command still running  -> left to it
    stable, flag disagrees                -> repaired (flag and address)
    stable, address moved                 -> address updated

An in-flight row is no longer its command's when the host call got no answer (state.unanswered), when
its command's deadline (`grace`) has passed without the host acknowledging it, or at engine start
(grace 0, when no command can be running). Sending it again never drops what the user asked: the
host's answer settles it as a command's would, a refusal is recorded as the operation's failure.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from engine.dao import devices
from engine.dao.models import Host, Vm, VmDevice
from engine.devices import inventory, live, state
from engine.devices.state import Subject
from engine.monitor.events import aware
from engine.vocab import PLUGGING, UNPLUGGING

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timing:
    now: datetime
    grace: float            # seconds an in-flight row is left to its command
    stale_after: float      # seconds after which an unplug the guest never completed is given up


def snapshot(dev: VmDevice) -> tuple[Any, ...]:
    """What must not have changed while the host was asked, for a row to be reconciled."""
    return (dev.is_plugged, dev.plug_state, aware(dev.plug_started_at), aware(dev.plug_acked_at),
            state.unanswered(dev), dev.address)


def _orphaned(dev: VmDevice, age: float, t: Timing) -> bool:
    return t.grace == 0 or state.unanswered(dev) or (age >= t.grace and dev.plug_acked_at is None)


def device(s: Session, host: Host, vm: Vm, dev: VmDevice, live_dev: dict[str, Any] | None, t: Timing,
           resend: list[live.LiveCall] | None = None) -> int:
    """Reconcile one row with its live device (None: the host does not have it). Returns 1 if changed.
    A transition to send again is appended to `resend`, for the caller to run once this transaction is
    committed (without `resend`, such rows are left alone)."""
    subject = Subject.of(dev, vm, host)
    address = live_dev.get("address") if live_dev else None
    started = aware(dev.plug_started_at)
    age = (t.now - started).total_seconds() if started else float("inf")

    if dev.plug_state in (PLUGGING, UNPLUGGING):
        plug = dev.plug_state == PLUGGING
        if plug and live_dev is not None:
            return int(state.plugged(s, subject, address, why=" (found by reconciliation)"))
        if not plug and live_dev is None:
            return int(state.unplugged(s, subject, why=f": host {host.name} no longer has it (found by "
                                       "reconciliation)"))
        if not plug and dev.plug_acked_at is not None:
            if age < t.stale_after:
                return 0
            error = {"code": None, "message": f"the guest did not release the device within {t.stale_after:g} s",
                     "host": host.name}
            return int(state.unplug_failed(s, subject, error, f"Unplug of {subject.label} from VM {vm.name} given "
                                           f"up after {age:.0f} s: host {host.name} still has it",
                                           address=address if address else devices.KEEP, severity="warning"))
        if resend is None or not _orphaned(dev, age, t):
            return 0
        why = (f"its last call got no answer ({dev.last_error.get('message')})" if state.unanswered(dev) and
               dev.last_error else f"host {host.name} {'does not have' if plug else 'still has'} it and no "
               "command is running it")
        if not state.resent(s, subject, plug=plug, why=why):
            return 0
        resend.append(live.resume(dev, subject, host, plug=plug))
        return 1

    if dev.is_plugged and live_dev is None and inventory.waiting(s, dev):
        return 0        # its device is gone from the host: plugged again when it comes back
    if dev.is_plugged != (live_dev is not None):
        return int(state.repaired(s, subject, plug=live_dev is not None, address=address))
    if live_dev is not None and address and address != dev.address:
        log.info("%s of VM %s moved to %s", subject.label, vm.name, address)
        return int(devices.set_address(s, dev.id, address))
    return 0
