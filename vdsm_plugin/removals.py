"""Device removals in flight. A detach is only finished when libvirt says so with DEVICE_REMOVED (or
DEVICE_REMOVAL_FAILED): the return code of detachDeviceFlags proves nothing. The waiter is registered
before the detach is sent, so an event that arrives before the call returns is not missed, and a detach
still in flight is never sent a second time."""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vdsm_plugin.errors import AgentError
from vdsm_plugin.journal import Journal

log = logging.getLogger(__name__)


@dataclass
class Removal:
    vm_id: str
    alias: str
    started: float = field(default_factory=time.monotonic)
    outcome: str | None = None  # "removed" | "failed"
    done: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout: float) -> str | None:
        self.done.wait(timeout)
        return self.outcome


class Removals:
    """`path`, when given, makes the detaches in flight outlive the process: after a restart the agent
    still never re-sends them, and one whose device left while the agent was down is reported (see
    recover). They are kept in the journal's database; `path` is the file an earlier agent kept them
    in, read once (its entries moved into the database) and then removed."""

    def __init__(self, journal: Journal, path: Path | None = None) -> None:
        self._journal = journal
        self._persist = path is not None
        self._lock = threading.Lock()
        self._inflight: dict[tuple[str, str], Removal] = {}
        if path is not None and path.exists():
            for vm_id, alias in json.loads(path.read_text() or "[]"):
                journal.set_unplug_in_flight(vm_id, alias, True)
            path.unlink()
        if self._persist:
            for vm_id, alias in journal.unplugs_in_flight():
                self._inflight[(vm_id, alias)] = Removal(vm_id, alias)

    def _save(self, vm_id: str, alias: str, in_flight: bool) -> None:
        """Called with the lock held: one row of the journal's database, committed at once."""
        if self._persist:
            self._journal.set_unplug_in_flight(vm_id, alias, in_flight)

    def recover(self, present: Callable[[str, str], bool | None]) -> None:
        """After a restart: a device that left while nobody listened gets its device_removed event.
        `present(vm_id, alias)` says whether the live domain still has it (None: the VM is gone)."""
        for vm_id, alias in list(self._inflight):
            if not present(vm_id, alias):
                log.info("unplug of %s on %s completed while the agent was down", alias, vm_id)
                self._finish(vm_id, alias, "removed")
                self._journal.append("device_removed", vm_id=vm_id, alias=alias, data={"recovered": True})

    def expect(self, vm_id: str, alias: str) -> Removal:
        key = (vm_id, alias)
        with self._lock:
            if key in self._inflight:
                raise AgentError("operationInFlight", f"a detach of {alias} is already in flight; "
                                 "its outcome will arrive as an event", alias=alias)
            removal = self._inflight[key] = Removal(vm_id, alias)
            self._save(vm_id, alias, True)
            return removal

    def abandon(self, removal: Removal) -> None:
        """The detach was never accepted (libvirt refused it): nothing is in flight any more."""
        with self._lock:
            if self._inflight.get((removal.vm_id, removal.alias)) is removal:
                del self._inflight[(removal.vm_id, removal.alias)]
                self._save(removal.vm_id, removal.alias, False)

    def pending(self, vm_id: str) -> list[str]:
        with self._lock:
            return [a for (v, a) in self._inflight if v == vm_id]

    def forget_vm(self, vm_id: str) -> None:
        """The VM stopped: its devices are gone with it."""
        with self._lock:
            for key in [k for k in self._inflight if k[0] == vm_id]:
                removal = self._inflight.pop(key)
                removal.outcome = "removed"
                removal.done.set()
            if self._persist:
                self._journal.clear_unplugs_in_flight(vm_id)

    def _finish(self, vm_id: str, alias: str, outcome: str) -> Removal | None:
        with self._lock:
            removal = self._inflight.pop((vm_id, alias), None)
            if removal:
                self._save(vm_id, alias, False)
        if removal:
            removal.outcome = outcome
            removal.done.set()
        return removal

    # Called from libvirt's event thread.
    def on_removed(self, vm_id: str, alias: str) -> None:
        removal = self._finish(vm_id, alias, "removed")
        data = {"elapsed": round(time.monotonic() - removal.started, 3)} if removal else {}
        self._journal.append("device_removed", vm_id=vm_id, alias=alias, data=data)

    def on_removal_failed(self, vm_id: str, alias: str) -> None:
        self._finish(vm_id, alias, "failed")
        self._journal.append("device_removal_failed", vm_id=vm_id, alias=alias)
