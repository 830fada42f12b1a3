"""The engine's view of its hosts: it consumes each agent's event journal (Host.getEvents long-poll) and
reconciles the database with the live devices of each running VM (VM.getDevices).

Events
    device_removed         the row in 'unplugging' -> unplugged, address cleared (audit <KIND>_UNPLUGGED)
    device_removal_failed  the row in 'unplugging' -> plugged again (audit <KIND>_UNPLUG_FAILED)
    vm_lifecycle           stopped / crashed / shutdown -> VM down (its pending unplugs are finished);
                           suspended -> paused, resumed -> up
    anything else          consumed and ignored
Events are applied in the transaction that stores the host's new last_event_seq, so a restart neither
loses nor re-applies one; every change is also a compare-and-set on the row's state, so applying an
event twice (or after the command already finished the transition) changes nothing. A device event
older than the row's current transition (agent clock, with CLOCK_SKEW tolerance) belongs to an
earlier transition and is ignored.

Reconciliation, per VM the database says runs on a host (compared by alias with the live devices):
    unplugging, gone        -> unplugged, address cleared        (<KIND>_UNPLUGGED)
    unplugging, present     -> plugged again once the unplug is older than `stale_after`, else left
    plugging,   present     -> plugged with the live address     (<KIND>_PLUGGED)
    plugging,   gone        -> unplugged, last_error set         (<KIND>_PLUG_FAILED)
    stable, flag disagrees  -> flag and address fixed            (<KIND>_STATE_REPAIRED)
    stable, address moved   -> address updated
    VM unknown to the host (noVM) or down there -> VM down       (VM_STOPPED)
In-flight rows younger than `in_flight_grace` are left to the command that is still running them,
except at engine start (`reconcile_all(startup=True)`), when no command can be running. A row that
changed while the host was being asked is left for the next round.

<KIND> is NIC for interfaces, else HOSTDEV, REDIRDEV or CONTROLLER.

A host that cannot be reached is marked 'unreachable' (one HOST_UNREACHABLE audit event per outage)
and 'up' again as soon as it answers. Hosts in maintenance are not watched.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from engine.dao import audit, devices, hosts as hosts_dao, vms as vms_dao
from engine.dao.models import Host, Vm, VmDevice
from engine.errors import HostCallFailed, HostUnreachable
from engine.hostclient import HostClientFactory

log = logging.getLogger(__name__)

# VM statuses in which the VM has a domain on its host.
RUNNING_STATUSES = ("up", "paused", "powering_up", "powering_down", "unknown")
STOP_EVENTS = frozenset({"stopped", "crashed", "shutdown"})
NO_VM = 1                       # schema/errors.yaml noVM
LONG_POLL_MARGIN = 5.0          # seconds added to the long-poll's own wait for the HTTP read timeout
CLOCK_SKEW = 5.0                # seconds of host/engine clock difference tolerated on event times
_KIND = {"interface": "NIC", "hostdev": "HOSTDEV", "redirdev": "REDIRDEV", "controller": "CONTROLLER"}

Sessions = sessionmaker[Session]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes for timezone-aware columns: they are UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def _code(dev: VmDevice, suffix: str) -> str:
    return f"{_KIND.get(dev.type, 'DEVICE')}_{suffix}"


def _label(dev: VmDevice) -> str:
    if dev.type == "interface" and dev.nic is not None:
        return f"NIC {dev.nic.name}"
    return f"{dev.type} device {dev.alias}"


def _snapshot(dev: VmDevice) -> tuple[Any, ...]:
    return (dev.is_plugged, dev.plug_state, _aware(dev.plug_started_at), dev.address)


class Monitor:
    """Watches every host. `sessions` is the engine's sessionmaker; `hosts` its HostClientFactory.

    poll_timeout: seconds one Host.getEvents long-poll waits on the agent;
    reconcile_interval: seconds between two reconciliations of every host (while started);
    stale_after: seconds after which an unplug the guest never completed is given up (back to plugged);
    in_flight_grace: seconds an in-flight row is left to its command before reconciliation touches it;
    retry_delay: seconds between two attempts on an unreachable host;
    clock: the current time (tests).
    """

    def __init__(self, sessions: Sessions, hosts: HostClientFactory, *, poll_timeout: float = 10,
                 reconcile_interval: float = 60, stale_after: float = 300, in_flight_grace: float = 60,
                 event_limit: int = 500, retry_delay: float = 5.0,
                 clock: Callable[[], datetime] = _utcnow) -> None:
        self._sessions = sessions
        self._hosts = hosts
        self.poll_timeout = float(poll_timeout)
        self.reconcile_interval = float(reconcile_interval)
        self.stale_after = float(stale_after)
        self.in_flight_grace = float(in_flight_grace)
        self.event_limit = int(event_limit)
        self.retry_delay = float(retry_delay)
        self._clock = clock
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._pollers: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, sessions: Sessions, hosts: HostClientFactory, config: Any) -> "Monitor":
        """Build from an engine.config.EngineConfig."""
        return cls(sessions, hosts, poll_timeout=config.poll_timeout,
                   reconcile_interval=config.reconcile_interval, stale_after=config.stale_after,
                   in_flight_grace=config.host_timeout + LONG_POLL_MARGIN + config.unplug_wait)

    # ---- host reachability ------------------------------------------------------------------------

    def _mark_unreachable(self, host: Host, err: HostUnreachable) -> None:
        with self._sessions.begin() as s:
            row = hosts_dao.get(s, host.id)
            if row is None or row.status != "up":
                return
            hosts_dao.set_status(s, host.id, "unreachable")
            audit.record(s, "HOST_UNREACHABLE", f"Host {row.name} could not be reached: {err.message}",
                         severity="warning", host_id=host.id, host=row.name)
        log.warning("host %s is unreachable: %s", host.name, err.message)

    def _mark_reachable(self, host: Host) -> None:
        with self._sessions.begin() as s:
            row = hosts_dao.get(s, host.id)
            if row is None or row.status != "unreachable":
                return
            hosts_dao.set_status(s, host.id, "up")
        log.info("host %s answers again", host.name)

    # ---- events -----------------------------------------------------------------------------------

    def run_once(self, host: Host) -> int:
        """One Host.getEvents long-poll after the host's last_event_seq; applies what it returns.
        Returns the number of events consumed."""
        return self._poll(host)[0]

    def _poll(self, host: Host) -> tuple[int, bool]:
        """(events consumed, whether the host answered)."""
        with self._sessions.begin() as s:
            row = hosts_dao.get(s, host.id)
            if row is None:
                return 0, False
            after, status = row.last_event_seq, row.status
        params = {"after": after, "timeout": self.poll_timeout, "limit": self.event_limit}
        try:
            answer = self._hosts(row).call("Host.getEvents", params, timeout=self.poll_timeout + LONG_POLL_MARGIN)
        except HostUnreachable as err:
            self._mark_unreachable(row, err)
            return 0, False
        except HostCallFailed as err:
            log.warning("Host.getEvents on %s failed: %s", row.name, err.message)
            return 0, False
        if status == "unreachable":
            self._mark_reachable(row)

        events = sorted((e for e in answer.get("events") or [] if isinstance(e, dict)
                         and isinstance(e.get("seq"), int) and e["seq"] > after), key=lambda e: e["seq"])
        last = answer.get("last")
        if not events:
            if isinstance(last, int) and last < after:
                self._journal_restarted(row, after, last)
            return 0, True

        with self._sessions.begin() as s:
            current = hosts_dao.get(s, row.id)
            if current is None or current.last_event_seq != after:
                return 0, True          # consumed meanwhile by someone else: nothing is applied twice
            for event in events:
                try:
                    self._apply(s, current, event)
                except (KeyError, TypeError, ValueError) as e:
                    log.warning("host %s: event %s is malformed, skipped: %s", row.name, event, e)
            hosts_dao.advance_event_seq(s, row.id, events[-1]["seq"])
        return len(events), True

    def _journal_restarted(self, host: Host, after: int, last: int) -> None:
        """The agent's journal is behind what was consumed (it was wiped or the agent reinstalled):
        read it again from the start and reconcile, since events may have been lost."""
        log.warning("host %s: its event journal restarted (last %d < consumed %d); re-reading it",
                    host.name, last, after)
        with self._sessions.begin() as s:
            row = hosts_dao.get(s, host.id)
            if row is None or row.last_event_seq != after:
                return
            row.last_event_seq = 0
        self.reconcile_host(host)

    def _apply(self, s: Session, host: Host, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        vm_id = event.get("vmId")
        if kind not in ("device_removed", "device_removal_failed", "vm_lifecycle") or not vm_id:
            log.debug("host %s: event %s ignored", host.name, event)
            return
        vm = vms_dao.get(s, vm_id)
        if vm is None or vm.run_on_host != host.id:
            log.debug("host %s: event %s is about a VM not running there; ignored", host.name, event)
            return
        if kind == "vm_lifecycle":
            self._on_lifecycle(s, host, vm, str((event.get("data") or {}).get("event")))
            return
        dev = devices.get_by_alias(s, vm.id, str(event["alias"]))
        if dev is None or dev.plug_state != "unplugging":
            return
        started = _aware(dev.plug_started_at)
        when = event.get("time")
        if started is not None and isinstance(when, (int, float)) and \
                datetime.fromtimestamp(when, timezone.utc) < started - timedelta(seconds=CLOCK_SKEW):
            log.info("host %s: %s of %s predates the current unplug; ignored", host.name, kind, dev.alias)
            return
        if kind == "device_removed":
            if devices.finish_transition(s, dev.id, from_state="unplugging", is_plugged=False, address=None):
                audit.record(s, _code(dev, "UNPLUGGED"), f"{_label(dev)} unplugged from VM {vm.name} on host "
                             f"{host.name}", vm_id=vm.id, device_id=dev.id, host_id=host.id,
                             alias=dev.alias, seq=event["seq"])
        else:
            error = {"code": None, "message": "the guest refused to release the device", "host": host.name,
                     "event": "device_removal_failed"}
            if devices.finish_transition(s, dev.id, from_state="unplugging", is_plugged=True, error=error):
                audit.record(s, _code(dev, "UNPLUG_FAILED"), f"Failed to unplug {_label(dev)} from VM "
                             f"{vm.name}: host {host.name} reports that the guest refused to release it",
                             severity="error", vm_id=vm.id, device_id=dev.id, host_id=host.id,
                             alias=dev.alias, seq=event["seq"])

    def _on_lifecycle(self, s: Session, host: Host, vm: Vm, what: str) -> None:
        if what in STOP_EVENTS:
            self._set_down(s, host, vm, f"VM {vm.name} {what} on host {host.name}",
                           severity="warning" if what == "crashed" else "info", event=what)
        elif what == "suspended":
            vms_dao.set_status_cas(s, vm.id, ("up",), "paused")
        elif what == "resumed":
            vms_dao.set_status_cas(s, vm.id, ("paused",), "up")

    def _set_down(self, s: Session, host: Host, vm: Vm, message: str, *, severity: str, **vars: Any) -> bool:
        """The VM is down: status down, no host, its pending unplugs finished (the devices went with
        the domain). Pending plugs are left to their command or to a later reconciliation."""
        if not vms_dao.set_status_cas(s, vm.id, RUNNING_STATUSES, "down", run_on_host=None):
            return False
        audit.record(s, "VM_STOPPED", message, severity=severity, vm_id=vm.id, host_id=host.id, **vars)
        for dev in devices.list_in_flight(s, vm_id=vm.id):
            if dev.plug_state == "unplugging" and devices.finish_transition(
                    s, dev.id, from_state="unplugging", is_plugged=False, address=None):
                audit.record(s, _code(dev, "UNPLUGGED"), f"{_label(dev)} unplugged from VM {vm.name}: "
                             "the VM stopped", vm_id=vm.id, device_id=dev.id, host_id=host.id, alias=dev.alias)
        return True

    # ---- reconciliation ---------------------------------------------------------------------------

    def reconcile_vm(self, vm: Vm, *, startup: bool = False) -> int:
        """Bring one running VM's device rows to what its host reports. Returns the number of rows
        (or VM statuses) changed."""
        with self._sessions.begin() as s:
            row = vms_dao.get(s, vm.id)
            if row is None or row.status not in RUNNING_STATUSES or not row.run_on_host:
                return 0
            host = hosts_dao.get(s, row.run_on_host)
            if host is None:
                return 0
            before = {d.id: _snapshot(d) for d in devices.list_for_vm(s, row.id)}
        try:
            info = self._hosts(host).call("VM.getDevices", {"vmId": row.id})
        except HostUnreachable as err:
            self._mark_unreachable(host, err)
            return 0
        except HostCallFailed as err:
            if err.host_code != NO_VM:
                log.warning("VM.getDevices of %s on %s failed: %s", row.name, host.name, err.message)
                return 0
            info = None
        if host.status == "unreachable":
            self._mark_reachable(host)

        with self._sessions.begin() as s:
            current = vms_dao.get(s, row.id)
            if current is None or current.status not in RUNNING_STATUSES or current.run_on_host != host.id:
                return 0
            if info is None or info.get("status") == "down":
                why = "does not know it" if info is None else "reports it down"
                return int(self._set_down(s, host, current, f"VM {current.name} is not running: host "
                                          f"{host.name} {why}", severity="warning", repaired=True))
            live = {d["alias"]: d for d in info.get("devices") or [] if isinstance(d, dict) and d.get("alias")}
            now = self._clock()
            grace = 0.0 if startup else self.in_flight_grace
            changed = 0
            for dev in devices.list_for_vm(s, current.id):
                if before.get(dev.id) != _snapshot(dev):
                    continue    # changed while the host was asked: next round
                changed += self._reconcile_device(s, host, current, dev, live.get(dev.alias), now, grace)
            return changed

    def _reconcile_device(self, s: Session, host: Host, vm: Vm, dev: VmDevice, live: dict[str, Any] | None,
                          now: datetime, grace: float) -> int:
        address = live.get("address") if live else None
        ids = {"vm_id": vm.id, "device_id": dev.id, "host_id": host.id, "alias": dev.alias}
        started = _aware(dev.plug_started_at)
        age = (now - started).total_seconds() if started else float("inf")

        if dev.plug_state == "unplugging":
            if live is None:
                if age < grace:
                    return 0
                done = devices.finish_transition(s, dev.id, from_state="unplugging", is_plugged=False, address=None)
                if done:
                    audit.record(s, _code(dev, "UNPLUGGED"), f"{_label(dev)} unplugged from VM {vm.name}: host "
                                 f"{host.name} no longer has it (found by reconciliation)", **ids)
                return int(done)
            if age < self.stale_after:
                return 0
            error = {"code": None, "message": f"the guest did not release the device within "
                     f"{self.stale_after:g} s", "host": host.name}
            done = devices.finish_transition(s, dev.id, from_state="unplugging", is_plugged=True,
                                             address=address if address else devices.KEEP, error=error)
            if done:
                audit.record(s, _code(dev, "UNPLUG_FAILED"), f"Unplug of {_label(dev)} from VM {vm.name} given "
                             f"up after {age:.0f} s: host {host.name} still has it", severity="warning", **ids)
            return int(done)

        if dev.plug_state == "plugging":
            if age < grace:
                return 0
            if live is not None:
                done = devices.finish_transition(s, dev.id, from_state="plugging", is_plugged=True,
                                                 address=address)
                if done:
                    audit.record(s, _code(dev, "PLUGGED"), f"{_label(dev)} plugged into VM {vm.name} on host "
                                 f"{host.name} (found by reconciliation)", address=address, **ids)
                return int(done)
            error = {"code": None, "message": "the plug did not complete: the host does not have the device",
                     "host": host.name}
            done = devices.finish_transition(s, dev.id, from_state="plugging", is_plugged=False, error=error)
            if done:
                audit.record(s, _code(dev, "PLUG_FAILED"), f"Plug of {_label(dev)} into VM {vm.name} did not "
                             f"complete: host {host.name} does not have it", severity="warning", **ids)
            return int(done)

        # stable
        if dev.is_plugged and live is None:
            done = devices.set_plugged(s, dev.id, False, address=None)
            if done:
                audit.record(s, _code(dev, "STATE_REPAIRED"), f"{_label(dev)} of VM {vm.name} marked unplugged: "
                             f"host {host.name} does not have it", severity="warning", plugged=False, **ids)
            return int(done)
        if not dev.is_plugged and live is not None:
            done = devices.set_plugged(s, dev.id, True, address=address)
            if done:
                audit.record(s, _code(dev, "STATE_REPAIRED"), f"{_label(dev)} of VM {vm.name} marked plugged: "
                             f"host {host.name} has it", severity="warning", plugged=True, address=address, **ids)
            return int(done)
        if live is not None and address and address != dev.address:
            log.info("%s of VM %s moved to %s", _label(dev), vm.name, address)
            return int(devices.set_address(s, dev.id, address))
        return 0

    def reconcile_host(self, host: Host, *, startup: bool = False) -> int:
        """Reconcile every VM the database says runs on `host`. Returns the number of changes."""
        with self._sessions.begin() as s:
            vm_list = list(vms_dao.list_on_host(s, host.id, RUNNING_STATUSES))
        changed = 0
        for vm in vm_list:
            changed += self.reconcile_vm(vm, startup=startup)
            with self._sessions.begin() as s:
                row = hosts_dao.get(s, host.id)
                if row is None or row.status == "unreachable":
                    break
        return changed

    def reconcile_all(self, *, startup: bool = True) -> int:
        """Reconcile every host that is not in maintenance, then settle transitions left in flight on
        VMs that are no longer running. Call it at engine start before serving requests (startup=True:
        no command can be in flight, so in-flight rows are finished whatever their age)."""
        with self._sessions.begin() as s:
            host_list = [h for h in hosts_dao.list(s) if h.status != "maintenance"]
        changed = 0
        for host in host_list:
            try:
                changed += self.reconcile_host(host, startup=startup)
            except Exception:  # noqa: BLE001 - one bad host must not stop the others
                log.exception("reconciliation of host %s failed", host.name)
        return changed + self._settle_stopped_vms(startup=startup)

    def _settle_stopped_vms(self, *, startup: bool) -> int:
        now = self._clock()
        grace = 0.0 if startup else self.in_flight_grace
        changed = 0
        with self._sessions.begin() as s:
            for dev in devices.list_in_flight(s, started_before=now - timedelta(seconds=grace) if grace else None):
                vm = vms_dao.get(s, dev.vm_id)
                if vm is None or vm.status in RUNNING_STATUSES:
                    continue
                state = dev.plug_state
                if state == "unplugging":
                    done = devices.finish_transition(s, dev.id, from_state="unplugging", is_plugged=False,
                                                     address=None)
                    code = _code(dev, "UNPLUGGED")
                else:
                    done = devices.finish_transition(s, dev.id, from_state="plugging", is_plugged=False,
                                                     error={"code": None, "message": "the VM stopped before "
                                                            "the plug completed"})
                    code = _code(dev, "PLUG_FAILED")
                if done:
                    changed += 1
                    audit.record(s, code, f"{_label(dev)} of VM {vm.name}: the VM is {vm.status}; its "
                                 f"{state} transition is finished", severity="warning", vm_id=vm.id,
                                 device_id=dev.id, alias=dev.alias)
        return changed

    # ---- threads ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Watch every host in the background: one long-polling thread per host, and a supervisor that
        follows the host list and reconciles everything every `reconcile_interval` seconds."""
        with self._lock:
            if self._supervisor is not None:
                return
            self._stop.clear()
            self._supervisor = threading.Thread(target=self._supervise, name="monitor", daemon=True)
            self._supervisor.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop watching; waits for the threads (at most one long-poll) unless `timeout` says less."""
        self._stop.set()
        with self._lock:
            threads = [t for t in (self._supervisor, *self._pollers.values()) if t is not None]
            self._supervisor = None
        limit = self.poll_timeout + LONG_POLL_MARGIN + 1 if timeout is None else timeout
        deadline = time.monotonic() + limit
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._pollers = {k: t for k, t in self._pollers.items() if t.is_alive()}

    @property
    def running(self) -> bool:
        return self._supervisor is not None and not self._stop.is_set()

    def _supervise(self) -> None:
        next_reconcile = time.monotonic() + self.reconcile_interval
        while not self._stop.is_set():
            try:
                self._follow_hosts()
            except Exception:  # noqa: BLE001 - the supervisor must survive a database hiccup
                log.exception("monitor: cannot list hosts")
            if time.monotonic() >= next_reconcile:
                try:
                    self.reconcile_all(startup=False)
                except Exception:  # noqa: BLE001
                    log.exception("monitor: periodic reconciliation failed")
                next_reconcile = time.monotonic() + self.reconcile_interval
            self._stop.wait(min(self.retry_delay, max(0.05, next_reconcile - time.monotonic())))

    def _follow_hosts(self) -> None:
        with self._sessions.begin() as s:
            wanted = {h.id: h.name for h in hosts_dao.list(s) if h.status != "maintenance"}
        with self._lock:
            for host_id, name in wanted.items():
                thread = self._pollers.get(host_id)
                if thread is None or not thread.is_alive():
                    thread = threading.Thread(target=self._poll_loop, args=(host_id,),
                                              name=f"monitor-{name}", daemon=True)
                    self._pollers[host_id] = thread
                    thread.start()

    def _poll_loop(self, host_id: str) -> None:
        while not self._stop.is_set():
            with self._sessions.begin() as s:
                host = hosts_dao.get(s, host_id)
            if host is None or host.status == "maintenance":
                return
            started = time.monotonic()
            try:
                count, answered = self._poll(host)
            except Exception:  # noqa: BLE001 - keep watching; the next poll retries the same events
                log.exception("monitor: polling host %s failed", host.name)
                count, answered = 0, False
            if not answered:
                self._stop.wait(self.retry_delay)
            elif count == 0 and time.monotonic() - started < 0.5:
                self._stop.wait(0.5)    # an agent that does not hold the long-poll must not spin us
