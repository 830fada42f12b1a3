"""Bringing device rows to a host's truth (VM.getDevices), through the named transitions of
engine.devices.state. Per device of a VM the database says runs on the host, compared by alias:

    unplugging, gone        -> unplugged
    unplugging, present     -> plugged again once the unplug is older than `stale_after`, else left
    plugging,   present     -> plugged with the live address
    plugging,   gone        -> unplugged, last_error set
    stable, flag disagrees  -> repaired (flag and address)
    stable, address moved   -> address updated

In-flight rows younger than `grace` are left to the command that is still running them (grace is 0
at engine start, when no command can be running).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from engine.dao import devices
from engine.dao.models import Host, Vm, VmDevice
from engine.devices import inventory, state
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
    return (dev.is_plugged, dev.plug_state, aware(dev.plug_started_at), dev.address)


def device(s: Session, host: Host, vm: Vm, dev: VmDevice, live: dict[str, Any] | None, t: Timing) -> int:
    """Reconcile one row with its live device (None: the host does not have it). Returns 1 if changed."""
    subject = Subject.of(dev, vm, host)
    address = live.get("address") if live else None
    started = aware(dev.plug_started_at)
    age = (t.now - started).total_seconds() if started else float("inf")

    if dev.plug_state == UNPLUGGING:
        if live is None:
            return int(age >= t.grace and state.unplugged(
                s, subject, why=f": host {host.name} no longer has it (found by reconciliation)"))
        if age < t.stale_after:
            return 0
        error = {"code": None, "message": f"the guest did not release the device within {t.stale_after:g} s",
                 "host": host.name}
        return int(state.unplug_failed(s, subject, error, f"Unplug of {subject.label} from VM {vm.name} given up "
                                       f"after {age:.0f} s: host {host.name} still has it",
                                       address=address if address else devices.KEEP, severity="warning"))

    if dev.plug_state == PLUGGING:
        if age < t.grace:
            return 0
        if live is not None:
            return int(state.plugged(s, subject, address, why=" (found by reconciliation)"))
        error = {"code": None, "message": "the plug did not complete: the host does not have the device",
                 "host": host.name}
        return int(state.plug_failed(s, subject, error, f"Plug of {subject.label} into VM {vm.name} did not "
                                     f"complete: host {host.name} does not have it", severity="warning"))

    if dev.is_plugged and live is None and inventory.waiting(s, dev):
        return 0        # its device is gone from the host: plugged again when it comes back
    if dev.is_plugged != (live is not None):
        return int(state.repaired(s, subject, plug=live is not None, address=address))
    if live is not None and address and address != dev.address:
        log.info("%s of VM %s moved to %s", subject.label, vm.name, address)
        return int(devices.set_address(s, dev.id, address))
    return 0
