"""The monitor's threads: one Host.getEvents long-poll per host (engine.monitor.events applies what it
returns), a supervisor that follows the host list, a reconciler that reconciles every host
periodically (engine.monitor.reconcile), and each host's reachability.

Per VM the database says runs on a host: a VM unknown to the host (noVM) or down there goes down
through the one settler, engine.devices.state.vm_stopped. A VM the host stopped by itself (crash,
guest power-off, `virsh destroy`) also has its shut-off domain undefined on the host, so that it can
start again, anywhere, and be deleted cleanly.

A host that cannot be reached is marked 'unreachable' (one HOST_UNREACHABLE audit event per outage)
and 'up' again as soon as it answers. Hosts in maintenance are not watched.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from sqlalchemy.orm import Session, sessionmaker

from engine import agent_codes, metrics
from engine.dao import audit, db, devices, hosts as hosts_dao, vms as vms_dao
from engine.dao.models import Host, Vm
from engine.devices import inventory, live as live_ops, state
from engine.devices.state import Subject
from engine.errors import HostCallFailed, HostUnreachable
from engine.hostclient import HostClientFactory
from engine.monitor import events as events_mod, reconcile
from engine.vocab import (DOWN, HOST_MAINTENANCE, HOST_UNREACHABLE, HOST_UP, PAUSED, RUNNING_STATUSES, UNKNOWN,
                          UP)

log = logging.getLogger(__name__)

# Running VMs no command is starting or stopping: the ones reconciliation may settle while serving.
SETTLED_RUNNING = (UP, PAUSED, UNKNOWN)

#: The part of reconcile_interval a periodic round's host turns are spread over (Monitor.reconcile_all).
RECONCILE_SPREAD = 0.5
#: The most of its process's CPU a periodic round takes: after each host's turn it rests for its turn's
#: CPU time times (1 / share - 1). The round's thread otherwise competes for the interpreter's lock
#: with the pollers and the requests of its process for as long as it runs -- with 1,000 hosts, a
#: round's 13 s of CPU came in 30 s, and the requests of the worker leading the monitor waited seconds.
#: A round that needs more than this share of its interval takes longer than the interval.
RECONCILE_SHARE = 0.25
LONG_POLL_MARGIN = 5.0          # seconds added to the long-poll's own wait for the HTTP read timeout
#: Seconds a poller waits after a poll that brought events before it polls again, so that the events of
#: a busy host come in batches: each batch costs a poll, a read and a move of the journal mark however
#: many events it holds (most of them, devices whose commands finished them, need nothing more). An
#: event waits this much longer at most.
POLL_LINGER = 0.05

Sessions = sessionmaker[Session]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _watched(startup: bool) -> tuple[str, ...]:
    """The VM statuses reconciliation reads: a VM powering up or down belongs to its command, except at
    startup."""
    return RUNNING_STATUSES if startup else SETTLED_RUNNING


def _snapshots(s: Session, vm_ids: list[str]) -> dict[str, dict[str, tuple[Any, ...]]]:
    """What reconcile.snapshot says of each device of these VMs, by VM id and device id."""
    return {vm_id: {d.id: reconcile.snapshot(d) for d in devs}
            for vm_id, devs in devices.list_for_vms(s, vm_ids).items()}


class Polled(NamedTuple):
    """What one poll of a host did: events consumed, whether the host answered, and the host's row as
    the consuming left it (None: read it before the next poll)."""

    consumed: int
    answered: bool
    row: Host | None = None


class Monitor:
    """Watches every host. `sessions` is the engine's sessionmaker; `hosts` its HostClientFactory.

    poll_timeout: seconds one Host.getEvents long-poll waits on the agent;
    reconcile_interval: seconds between two reconciliations of every host (while started), each round's
        host turns spread over RECONCILE_SPREAD of it, and its CPU at most RECONCILE_SHARE of a core's;
    stale_after: seconds after which an unplug the guest never completed is given up (back to plugged);
    in_flight_grace: seconds an in-flight row is left to its command before reconciliation touches it;
    retry_delay: seconds between two attempts on an unreachable host;
    linger: seconds a poller waits after a poll that brought events (POLL_LINGER);
    clock: the current time (tests).
    """

    def __init__(self, sessions: Sessions, hosts: HostClientFactory, *, poll_timeout: float = 10,
                 reconcile_interval: float = 60, stale_after: float = 300, in_flight_grace: float = 60,
                 event_limit: int = 500, retry_delay: float = 5.0, linger: float = POLL_LINGER,
                 clock: Callable[[], datetime] = _utcnow) -> None:
        self._sessions = sessions
        self._readers = db.read_sessions(sessions)     # the poll's read of where the journal was left
        self._hosts = hosts
        self.poll_timeout = float(poll_timeout)
        self.reconcile_interval = float(reconcile_interval)
        self.stale_after = float(stale_after)
        self.in_flight_grace = float(in_flight_grace)
        self.event_limit = int(event_limit)
        self.retry_delay = float(retry_delay)
        self.linger = float(linger)
        self._clock = clock
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._reconciler: threading.Thread | None = None
        self._pollers: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        # Pollers at work on what their long-poll brought (stop waits for these, not for the polls).
        self._working = 0
        self._idle = threading.Condition()

    @classmethod
    def from_config(cls, sessions: Sessions, hosts: HostClientFactory, config: Any) -> "Monitor":
        """Build from an engine.config.EngineConfig."""
        return cls(sessions, hosts, poll_timeout=config.poll_timeout,
                   reconcile_interval=config.reconcile_interval, stale_after=config.stale_after,
                   in_flight_grace=config.host_timeout + LONG_POLL_MARGIN + config.unplug_wait)

    # ---- host reachability ------------------------------------------------------------------------

    def _mark_unreachable(self, host: Host, err: HostUnreachable) -> None:
        with self._sessions.begin() as s:
            # A compare-and-set: a host put in maintenance since it was read stays in maintenance.
            if not hosts_dao.set_status_cas(s, host.id, (HOST_UP,), HOST_UNREACHABLE):
                return
            audit.record(s, "HOST_UNREACHABLE", f"Host {host.name} could not be reached: {err.message}",
                         severity="warning", host_id=host.id, host=host.name)
        log.warning("host %s is unreachable: %s", host.name, err.message)

    def _mark_reachable(self, host: Host) -> None:
        with self._sessions.begin() as s:
            if not hosts_dao.set_status_cas(s, host.id, (HOST_UNREACHABLE,), HOST_UP):
                return
        log.info("host %s answers again", host.name)

    # ---- events -----------------------------------------------------------------------------------

    def run_once(self, host: Host) -> int:
        """One Host.getEvents long-poll after the host's last_event_seq; applies what it returns.
        Returns the number of events consumed."""
        return self._poll(host).consumed

    def _poll(self, host: Host) -> Polled:
        row = self._read_host(host.id)
        return Polled(0, False) if row is None else self._poll_row(row)

    def _read_host(self, host_id: str) -> Host | None:
        """The host's row as it is now (where its journal was left, its status), read outside any
        write transaction."""
        with self._readers.kw["bind"].connect() as conn:
            return hosts_dao.read_detached(conn, host_id)

    def _poll_row(self, row: Host) -> Polled:
        """_poll of the host's row as just read (its last_event_seq and status). What the poll brings is
        left alone when the monitor was stopped while it waited: the journal mark has not moved, so the
        next leader reads the same events."""
        params = {"after": row.last_event_seq, "timeout": self.poll_timeout, "limit": self.event_limit}
        try:
            answer = self._hosts(row).call("Host.getEvents", params, timeout=self.poll_timeout + LONG_POLL_MARGIN)
        except (HostUnreachable, HostCallFailed) as err:
            with self._work() as going_on:
                if going_on:
                    self._poll_failed(row, err)
            return Polled(0, False)
        with self._work() as going_on:
            return self._take_answer(row, answer) if going_on else Polled(0, True)

    @contextmanager
    def _work(self) -> Iterator[bool]:
        """A poller's work after its long-poll: whether it may go on (not once stop began), counted
        while it runs so that stop waits for it. A poll still waiting on its agent is not waited for:
        that is most of poll_timeout, on every stop."""
        with self._idle:
            going_on = not self._stop.is_set()
            self._working += going_on
        try:
            yield going_on
        finally:
            if going_on:
                with self._idle:
                    self._working -= 1
                    self._idle.notify_all()

    def _poll_failed(self, row: Host, err: HostUnreachable | HostCallFailed) -> None:
        if isinstance(err, HostUnreachable):
            self._mark_unreachable(row, err)
        else:
            log.warning("Host.getEvents on %s failed: %s", row.name, err.message)

    def _take_answer(self, row: Host, answer: dict[str, Any]) -> Polled:
        """Apply what a Host.getEvents answered after the host's row `row` was read."""
        after, status = row.last_event_seq, row.status
        metrics.host_polled(row.name)
        if status == HOST_UNREACHABLE:
            self._mark_reachable(row)
            # What happened while it was away (a plug or unplug whose answer was lost) is settled now,
            # not at the next periodic round.
            self.reconcile_host(row)

        events = sorted((e for e in answer.get("events") or [] if isinstance(e, dict)
                         and isinstance(e.get("seq"), int) and e["seq"] > after), key=lambda e: e["seq"])
        last = answer.get("last")
        if not events:
            if isinstance(last, int) and last < after:
                self._journal_restarted(row, after, last)
            return Polled(0, True)

        events_mod.let_commands_finish(events)
        with self._readers() as s:
            todo = events_mod.to_apply(s, events)
        taken = self._take(row, after, events[-1]["seq"], todo)
        if taken is None:
            return Polled(0, True)          # consumed meanwhile by someone else: nothing is applied twice
        applied, moved = taken
        metrics.events_applied(events)
        for vm_id in applied.undefine:
            self._undefine(row, vm_id)
        why = " (the host reported a change)"
        if applied.inventory:
            self.refresh_inventory(row, applied.inventory, why=why)
        if named := applied.named():
            self.refresh_inventory(row, {inventory.capability_of(n) for n in named}, why=why, names=named)
        return Polled(len(events), True, moved)

    def _take(self, row: Host, after: int, seq: int,
              todo: list[dict[str, Any]]) -> tuple[events_mod.Applied, Host] | None:
        """Move the host's journal mark from `after` to `seq` and apply `todo` in the same transaction;
        None when another monitor moved it first, else what was applied and the host's row as the move
        left it. With nothing to apply (the usual batch: devices whose commands finished them) the mark
        moves in one statement."""
        applied = events_mod.Applied()
        with self._sessions() as s, (s.begin() if todo else db.one_statement(s)):
            moved = hosts_dao.take_events(s, row.id, after, seq)
            if moved is None:
                return None
            for event in todo:
                try:
                    with s.begin_nested():
                        events_mod.apply(s, row, event, applied)   # the handlers read its id and name
                except (KeyError, TypeError, ValueError) as e:
                    log.warning("host %s: event %s is malformed, skipped: %s", row.name, event, e)
        return applied, moved

    def refresh_inventory(self, host: Host, capabilities: Any = inventory.CAPABILITIES, *, why: str = "",
                          names: set[str] | None = None) -> None:
        """Read the host's devices again (only those it calls `names`, when given) and store them, then
        plug the devices of running VMs that came back into them again. A host that cannot answer for
        names has its inventory of `capabilities` read whole; a failure is logged, the next event or
        reconciliation tries again."""
        try:
            change = inventory.refresh(self._sessions, self._hosts, host, sorted(capabilities), why=why,
                                       names=names)
        except HostCallFailed as err:
            log.warning("host %s: could not read its devices%s: %s", host.name,
                        f" {', '.join(sorted(names))}" if names else "", err.message)
            if names:
                self.refresh_inventory(host, capabilities, why=why)
            return
        except HostUnreachable as err:
            log.warning("host %s: could not read its devices: %s", host.name, err.message)
            return
        if change.found:
            inventory.reattach(self._sessions, self._hosts, host, change.found)

    def _undefine(self, host: Host, vm_id: str) -> None:
        """Drop the shut-off domain a VM left on its host when it stopped outside the engine."""
        try:
            self._hosts(host).call("VM.destroy", {"vmId": vm_id, "undefine": True})
        except HostCallFailed as err:
            if err.host_code != agent_codes.code("noVM"):
                log.warning("host %s: could not undefine the domain of VM %s: %s", host.name, vm_id, err.message)
        except HostUnreachable as err:
            log.warning("host %s: could not undefine the domain of VM %s: %s", host.name, vm_id, err.message)

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

    # ---- reconciliation ---------------------------------------------------------------------------

    def reconcile_vm(self, vm: Vm, *, startup: bool = False) -> int:
        """Bring one running VM's device rows to what its host reports (VM.getDevices). Returns the
        number of rows (or VM statuses) changed. A VM powering up or down belongs to its command, except
        at startup."""
        with self._readers() as s:
            row = vms_dao.get(s, vm.id)
            if row is None or row.status not in _watched(startup) or not row.run_on_host:
                return 0
            host = hosts_dao.get(s, row.run_on_host)
            if host is None:
                return 0
            before = _snapshots(s, [row.id])

        def read() -> dict[str, dict[str, Any]]:
            try:
                return {row.id.lower(): self._hosts(host).call("VM.getDevices", {"vmId": row.id})}
            except HostCallFailed as err:
                if err.host_code != agent_codes.code("noVM"):
                    raise
                return {}
        return self._reconcile(host, before, read, startup=startup)

    def _reconcile(self, host: Host, before: dict[str, dict[str, tuple[Any, ...]]],
                   read: Callable[[], dict[str, dict[str, Any]]], *, startup: bool) -> int:
        """Reconcile the VMs of `before` (VM id -> its devices' snapshots, taken before the host was
        asked) with what `read` got from the host (lower-case VM id -> its VM info; a VM missing there
        is one the host does not know), in one transaction. A row that changed while the host was
        asked is left to the next round."""
        resend: list[live_ops.LiveCall] = []
        undefine: list[str] = []
        try:
            reported = read()
        except HostUnreachable as err:
            self._mark_unreachable(host, err)
            return 0
        except HostCallFailed as err:
            log.warning("host %s: reading its VMs' devices failed: %s", host.name, err.message)
            return 0
        if host.status == HOST_UNREACHABLE:
            self._mark_reachable(host)

        changed = 0
        timing = reconcile.Timing(now=self._clock(), grace=0.0 if startup else self.in_flight_grace,
                                  stale_after=self.stale_after)
        with self._sessions.begin() as s:
            vms = vms_dao.get_many(s, list(before))
            rows = devices.list_for_vms(s, list(vms))
            for vm_id, snapshots in before.items():
                current = vms.get(vm_id)
                if current is None or current.status not in _watched(startup) or current.run_on_host != host.id:
                    continue
                info = reported.get(vm_id.lower())
                if info is None or info.get("status") == DOWN:
                    why = "does not know it" if info is None else "reports it down"
                    down = state.vm_stopped(s, current, f"VM {current.name} is not running: host {host.name} {why}",
                                            host=host, severity="warning", repaired=True)
                    if down and info is not None:
                        undefine.append(current.id)
                    changed += int(down)
                    continue
                live = {d["alias"]: d for d in info.get("devices") or [] if isinstance(d, dict) and d.get("alias")}
                for dev in rows[vm_id]:
                    if snapshots.get(dev.id) != reconcile.snapshot(dev):
                        continue    # changed while the host was asked: next round
                    changed += reconcile.device(s, host, current, dev, live.get(dev.alias), timing, resend)
        for vm_id in undefine:
            self._undefine(host, vm_id)
        for call in resend:
            self._send_again(call)
        return changed

    def _send_again(self, call: live_ops.LiveCall) -> None:
        """A transition reconciliation took back from a command that is over: the host's answer settles
        it as the command's would have; no answer leaves it in flight for the next round."""
        try:
            live_ops.run(self._sessions, self._hosts, call)
        except (HostCallFailed, HostUnreachable) as err:
            log.warning("host %s: sending %s of %s again failed: %s", call.host.name, call.verb, call.subject.label,
                        err.message)

    def reconcile_host(self, host: Host, *, startup: bool = False) -> int:
        """Reconcile the host's device inventory and every VM the database says runs on `host`, from
        one VM.list (every VM of the host with its devices: one call and one transaction per host,
        not per VM). Returns the number of VM changes."""
        self.refresh_inventory(host)
        with self._readers() as s:
            vm_ids = [vm.id for vm in vms_dao.list_on_host(s, host.id, _watched(startup))]
            before = _snapshots(s, vm_ids)
        if not before:
            return 0

        def read() -> dict[str, dict[str, Any]]:
            listed = self._hosts(host).call("VM.list", {}).get("vms") or []
            return {v["vmId"].lower(): v for v in listed if isinstance(v, dict) and isinstance(v.get("vmId"), str)}
        return self._reconcile(host, before, read, startup=startup)

    def reconcile_all(self, *, startup: bool = True, spread: float = 0.0) -> int:
        """Reconcile every host that is not in maintenance, then settle transitions left in flight on
        VMs that are no longer running. Call it at engine start before serving requests (startup=True:
        no command can be in flight, so in-flight rows are finished whatever their age). `spread`:
        seconds over which the hosts' turns are spaced out evenly (the periodic round), so that its CPU
        comes in small steps between the events' instead of one burst that holds them back -- with
        1,000 hosts a round is about 13 s of one core."""
        with self._sessions.begin() as s:
            host_list = [h for h in hosts_dao.list(s) if h.status != HOST_MAINTENANCE]
        changed = 0
        begun = time.monotonic()
        rested = begun
        for i, host in enumerate(host_list):
            turn = max(begun + spread * i / len(host_list), rested)
            if turn > time.monotonic() and self._stop.wait(turn - time.monotonic()):
                return changed
            used = time.thread_time()
            try:
                changed += self.reconcile_host(host, startup=startup)
            except Exception:  # noqa: BLE001 - one bad host must not stop the others
                log.exception("reconciliation of host %s failed", host.name)
            if spread:
                rested = time.monotonic() + (time.thread_time() - used) * (1 / RECONCILE_SHARE - 1)
        return changed + self._settle_stopped_vms(startup=startup)

    def _settle_stopped_vms(self, *, startup: bool) -> int:
        """Transitions left in flight on VMs that are no longer running (a crash between a command's
        two transactions) end as the VM-went-down settler ends them."""
        now = self._clock()
        grace = 0.0 if startup else self.in_flight_grace
        changed = 0
        with self._sessions.begin() as s:
            for dev in devices.list_in_flight(s, started_before=now - timedelta(seconds=grace) if grace else None):
                vm = vms_dao.get(s, dev.vm_id)
                if vm is None or vm.status in RUNNING_STATUSES:
                    continue
                changed += int(state.gone_with_vm(s, Subject.of(dev, vm), dev.plug_state,
                                                  f"the VM is {vm.status}", severity="warning"))
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
            self._reconciler = threading.Thread(target=self._reconcile_periodically, name="monitor-reconcile",
                                                daemon=True)
            self._supervisor.start()
            self._reconciler.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop watching: once this returns, nothing more is applied or written (within `timeout`
        seconds, default one long-poll's). It waits for the supervisor, the periodic reconciliation
        (a round stops between two hosts' turns) and the pollers' work on what their polls brought,
        not for polls still waiting on their agents: those end on their own and apply nothing (or,
        when the monitor is started again before, go on as its pollers)."""
        self._stop.set()
        with self._lock:
            threads = [t for t in (self._supervisor, self._reconciler) if t is not None]
            self._supervisor = self._reconciler = None
        limit = self.poll_timeout + LONG_POLL_MARGIN + 1 if timeout is None else timeout
        deadline = time.monotonic() + limit
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._idle:
            self._idle.wait_for(lambda: self._working == 0, max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._pollers = {k: t for k, t in self._pollers.items() if t.is_alive()}

    @property
    def running(self) -> bool:
        return self._supervisor is not None and not self._stop.is_set()

    def _supervise(self) -> None:
        """Follow the host list: a new host gets its poller within retry_delay (or reconcile_interval,
        when that is shorter)."""
        while not self._stop.is_set():
            try:
                self._follow_hosts()
            except Exception:  # noqa: BLE001 - the supervisor must survive a database hiccup
                log.exception("monitor: cannot list hosts")
            self._stop.wait(min(self.retry_delay, self.reconcile_interval))

    def _reconcile_periodically(self) -> None:
        """A round every `reconcile_interval` seconds, from one round's start to the next's (each
        host's turn comes once per interval), spread over part of it (RECONCILE_SPREAD)."""
        next_round = time.monotonic() + self.reconcile_interval
        while not self._stop.wait(max(0.0, next_round - time.monotonic())):
            next_round = time.monotonic() + self.reconcile_interval
            try:
                self.reconcile_all(startup=False, spread=self.reconcile_interval * RECONCILE_SPREAD)
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("monitor: periodic reconciliation failed")

    def _follow_hosts(self) -> None:
        with self._sessions.begin() as s:
            wanted = {h.id: h.name for h in hosts_dao.list(s) if h.status != HOST_MAINTENANCE}
        with self._lock:
            for host_id, name in wanted.items():
                thread = self._pollers.get(host_id)
                if thread is None or not thread.is_alive():
                    thread = threading.Thread(target=self._poll_loop, args=(host_id,),
                                              name=f"monitor-{name}", daemon=True)
                    self._pollers[host_id] = thread
                    thread.start()

    def _poll_loop(self, host_id: str) -> None:
        host: Host | None = None
        while not self._stop.is_set():
            # The row a batch's take returned is as fresh as a read; after any other poll, read it.
            host = host or self._read_host(host_id)
            if host is None or host.status == HOST_MAINTENANCE:
                return
            started = time.monotonic()
            try:
                polled = self._poll_row(host)
            except Exception:  # noqa: BLE001 - keep watching; the next poll retries the same events
                log.exception("monitor: polling host %s failed", host.name)
                polled = Polled(0, False)
            host = polled.row
            if not polled.answered:
                self._stop.wait(self.retry_delay)
            elif polled.consumed:
                self._stop.wait(self.linger)
            elif time.monotonic() - started < 0.5:
                self._stop.wait(0.5)    # an agent that does not hold the long-poll must not spin us


class Standby:
    """Runs `monitor` only while this process holds the deployment's monitor lease
    (engine.dao.leases): every engine process stands by, one watches the hosts, and when it dies or
    loses its database connection another takes over within `retry` seconds.

    startup: whether the leader's first reconciliation may finish in-flight rows whatever their age
    (only when no command can be in flight: a single engine process, before it serves)."""

    def __init__(self, monitor: Monitor, lease: Any, *, startup: bool = False, retry: float = 5.0) -> None:
        self.monitor = monitor
        self.lease = lease
        self.startup = startup
        self.retry = float(retry)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Try the lease at once (so that a single process reconciles before it serves), then stand by
        in the background."""
        self._stop.clear()
        won = self._try()
        self.startup = False    # once this process serves, its own commands may be in flight
        self._thread = threading.Thread(target=self._run, args=(won,), name="monitor-standby", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _try(self) -> bool:
        try:
            won = self.lease.acquire()
        except Exception as e:  # noqa: BLE001 - a database that does not answer: stand by, try again
            log.warning("monitor: cannot take the lease (%r): %s", self.lease, e)
            return False
        if won:
            log.info("monitor: this process holds the lease (%r) and watches the hosts", self.lease)
            started = time.monotonic()
            try:
                changed = self.monitor.reconcile_all(startup=self.startup)
                log.info("monitor: reconciliation on taking the lease: %d change(s) in %.1f s", changed,
                         time.monotonic() - started)
            except Exception:  # noqa: BLE001 - the periodic reconciliation tries again
                log.exception("monitor: reconciliation on taking the lease failed")
            self.startup = False     # a later leader may find commands of other processes in flight
            self.monitor.start()
        return won

    def _run(self, leading: bool) -> None:
        while not self._stop.is_set():
            if not leading:
                if self._stop.wait(self.retry):
                    break
                leading = self._try()
                continue
            if self._stop.wait(self.retry):
                break
            if not self._held():
                log.warning("monitor: lost the lease (%r); standing by", self.lease)
                self.monitor.stop(timeout=self.retry)
                leading = False
        if leading:
            self.monitor.stop()
        self.lease.release()

    def _held(self) -> bool:
        try:
            return bool(self.lease.held())
        except Exception:  # noqa: BLE001
            return False
