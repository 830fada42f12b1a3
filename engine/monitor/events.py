"""Applying the agents' journal events (Host.getEvents), dispatched by kind from one table.

    device_removed         the row in 'unplugging' -> unplugged, address cleared
    device_removal_failed  the row in 'unplugging' -> plugged again, the error kept
    vm_lifecycle           stopped / crashed / shutdown -> the VM went down (and its domain is to be
                           undefined on the host); suspended -> paused, resumed -> up
    hostdev_added/removed  a device came to or left the host: once the batch is committed, the devices
                           its events name are read from the host and synced, those alone (a VM's
                           device that came back is then plugged into it again); an event that names
                           none has the whole inventory read
    hostdev_dropped        the host started a VM without an optional USB device it found gone: one
                           warning on the VM, and the USB inventory is read again (the engine's was stale)
    anything else          consumed and ignored

Events are applied in the transaction that stores the host's new last_event_seq, so a restart neither
loses nor re-applies one, and every change is a named transition (a compare-and-set), so an event that
arrives after the command finished the row changes nothing. Such a device event -- the usual one: the
agent journals it as it answers the unplug -- is dropped by one read for the whole batch (to_apply);
a batch left with nothing to apply only moves the mark, in one statement. A device event older than
the row's current transition, and a lifecycle event at or before the journal position of the VM's
current run (vms.run_event_seq), belong to the past and are ignored.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy.orm import Session

from engine.dao import devices as devices_dao
from engine.dao import vms as vms_dao
from engine.dao.models import Host, Vm, VmDevice
from engine.devices import inventory, live, state
from engine.devices.state import Subject
from engine.vocab import PAUSED, POWERING_DOWN, UNKNOWN, UNPLUGGING, UP

log = logging.getLogger(__name__)

AFTER_START = (UP, PAUSED, POWERING_DOWN, UNKNOWN)
STOP_EVENTS = frozenset({"stopped", "crashed", "shutdown"})
CLOCK_SKEW = 5.0    # seconds of host/engine clock difference tolerated on event times


@dataclass
class Applied:
    """What applying a batch of events left to do once it is committed."""

    undefine: list[str] = field(default_factory=list)   # VMs whose shut-off domain the host should drop
    inventory: set[str] = field(default_factory=set)     # capabilities whose inventory is to be read again
    hostdevs: set[str] = field(default_factory=set)      # node devices to read again (by name), one by one

    def named(self) -> set[str]:
        """The devices to read by name: those whose whole capability is not read again anyway."""
        return {n for n in self.hostdevs if inventory.capability_of(n) not in self.inventory}


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes for timezone-aware columns: they are UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def _device_event(s: Session, host: Host, vm: Vm, dev: VmDevice, event: dict[str, Any], applied: Applied) -> None:
    if dev.plug_state != UNPLUGGING:
        return
    started = aware(dev.plug_started_at)
    when = event.get("time")
    if started is not None and isinstance(when, (int, float)) and \
            datetime.fromtimestamp(when, timezone.utc) < started - timedelta(seconds=CLOCK_SKEW):
        log.info("host %s: %s of %s predates the current unplug; ignored", host.name, event["kind"], dev.alias)
        return
    subject = Subject.of(dev, vm, host)
    if event["kind"] == "device_removed":
        state.unplugged(s, subject, seq=event["seq"])
    else:
        state.unplug_failed(s, subject, {"code": None, "message": "the guest refused to release the device",
                                         "host": host.name, "event": "device_removal_failed"},
                            f"Failed to unplug {subject.label} from VM {vm.name}: host {host.name} reports that "
                            "the guest refused to release it", seq=event["seq"])


def _lifecycle(s: Session, host: Host, vm: Vm, event: dict[str, Any], applied: Applied) -> None:
    what = str((event.get("data") or {}).get("event"))
    if vm.run_event_seq is not None and event["seq"] <= vm.run_event_seq:
        log.info("host %s: %s of VM %s is from before its current run; ignored", host.name, what, vm.name)
        return
    if what in STOP_EVENTS:
        # Powering up belongs to the start command until the host answered (its run_event_seq is set then).
        if state.vm_stopped(s, vm, f"VM {vm.name} {what} on host {host.name}", host=host, expected=AFTER_START,
                            severity="warning" if what == "crashed" else "info", event=what):
            applied.undefine.append(vm.id)
    elif what == "suspended":
        vms_dao.set_status_cas(s, vm.id, (UP,), PAUSED)
    elif what == "resumed":
        vms_dao.set_status_cas(s, vm.id, (PAUSED,), UP)


def _hostdev_event(s: Session, host: Host, event: dict[str, Any], applied: Applied) -> None:
    name = str((event.get("data") or {}).get("name") or "")
    if name:
        applied.hostdevs.add(name)
    else:
        applied.inventory.update(inventory.CAPABILITIES)


def _hostdev_dropped(s: Session, host: Host, vm: Vm, dev: VmDevice, event: dict[str, Any],
                     applied: Applied) -> None:
    inventory.record_dropped(s, vm.id, dev.id, host, f"host {host.name} found it gone")
    applied.inventory.add("usb_device")


Handler = Callable[[Session, Host, Vm, dict[str, Any], Applied], None]
DeviceHandler = Callable[[Session, Host, Vm, VmDevice, dict[str, Any], Applied], None]
HostHandler = Callable[[Session, Host, dict[str, Any], Applied], None]

#: event kind -> its handler, for the events about one device of a VM (by its alias); the VM and the
#: device are read in one statement.
DEVICE_HANDLERS: dict[str, DeviceHandler] = {
    "device_removed": _device_event,
    "device_removal_failed": _device_event,
    "hostdev_dropped": _hostdev_dropped,
}
#: event kind -> its handler, for the events about a VM; every kind in none of the tables is consumed
#: and ignored.
HANDLERS: dict[str, Handler] = {
    "vm_lifecycle": _lifecycle,
}
#: event kind -> its handler, for the events about the host rather than one of its VMs.
HOST_HANDLERS: dict[str, HostHandler] = {
    "hostdev_added": _hostdev_event,
    "hostdev_removed": _hostdev_event,
}


#: How long the monitor waits for a command of this process still finishing on a device before it
#: applies that device's event anyway (seconds): the command usually commits within milliseconds.
COMMAND_WAIT = 5.0
DEVICE_EVENTS = frozenset({"device_removed", "device_removal_failed"})


def _device(event: dict[str, Any]) -> tuple[str, str] | None:
    """(VM id, alias) of a device event that names both, else None."""
    if event.get("kind") in DEVICE_EVENTS and event.get("vmId") and event.get("alias"):
        return str(event["vmId"]), str(event["alias"])
    return None


def let_commands_finish(events: list[dict[str, Any]], timeout: float = COMMAND_WAIT) -> None:
    """Before a batch is applied: wait for this process's live operations still finishing on a device
    the batch's device events name (engine.devices.live.FINISHING), so that the command's last
    transaction does not queue behind the monitor's for the write lock."""
    named = [key for e in events if (key := _device(e)) is not None]
    if named and not live.FINISHING.wait(named, timeout):
        log.info("a command on %s is still running after %g s; its events are applied now", named, timeout)


def to_apply(s: Session, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The batch without the device events that could change nothing: those about a device that is not
    being unplugged, usually because the command that unplugged it has finished the row already (the
    agent journals the event as it answers). One statement for the batch, where applying each such
    event would read its VM and device in a savepoint of its own. It may be read before the batch's
    transaction: an event about a device's current unplug comes after that unplug's first transaction
    was committed, so a device not being unplugged then has nothing the event could finish (one that
    is, is read again when its event is applied). An event that does not name its device is kept:
    applying it logs it."""
    named = {key for e in events if (key := _device(e)) is not None}
    if not named:
        return events
    busy = devices_dao.unplugging(s, {vm_id for vm_id, _ in named})
    return [e for e in events if (key := _device(e)) is None or key in busy]


def apply(s: Session, host: Host, event: dict[str, Any], applied: Applied) -> None:
    if (host_handler := HOST_HANDLERS.get(str(event.get("kind")))) is not None:
        host_handler(s, host, event, applied)
        return
    kind = str(event.get("kind"))
    vm_id = event.get("vmId")
    if not vm_id or (kind not in HANDLERS and kind not in DEVICE_HANDLERS):
        log.debug("host %s: event %s ignored", host.name, event)
        return
    dev: VmDevice | None = None
    if kind in DEVICE_HANDLERS:
        vm, dev = vms_dao.get_with_device_by_alias(s, vm_id, str(event["alias"]))
    else:
        vm = vms_dao.get(s, vm_id)
    if vm is None or vm.run_on_host != host.id:
        log.debug("host %s: event %s is about a VM not running there; ignored", host.name, event)
        return
    if kind in HANDLERS:
        HANDLERS[kind](s, host, vm, event, applied)
    elif dev is not None:
        DEVICE_HANDLERS[kind](s, host, vm, dev, event, applied)
