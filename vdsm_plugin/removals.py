"""Device removals in flight. A detach is only finished when libvirt says so with DEVICE_REMOVED (or
DEVICE_REMOVAL_FAILED): the return code of detachDeviceFlags proves nothing. The waiter is registered
before the detach is sent, so an event that arrives before the call returns is not missed, and a detach
still in flight is never sent a second time."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from vdsm_plugin.errors import AgentError
from vdsm_plugin.journal import Journal


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
    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._lock = threading.Lock()
        self._inflight: dict[tuple[str, str], Removal] = {}

    def expect(self, vm_id: str, alias: str) -> Removal:
        key = (vm_id, alias)
        with self._lock:
            if key in self._inflight:
                raise AgentError("operationInFlight", f"a detach of {alias} is already in flight; "
                                 "its outcome will arrive as an event", alias=alias)
            removal = self._inflight[key] = Removal(vm_id, alias)
            return removal

    def abandon(self, removal: Removal) -> None:
        """The detach was never accepted (libvirt refused it): nothing is in flight any more."""
        with self._lock:
            if self._inflight.get((removal.vm_id, removal.alias)) is removal:
                del self._inflight[(removal.vm_id, removal.alias)]

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

    def _finish(self, vm_id: str, alias: str, outcome: str) -> Removal | None:
        with self._lock:
            removal = self._inflight.pop((vm_id, alias), None)
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
