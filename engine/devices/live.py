"""The one live plug/unplug runner, for every device kind.

`prepare` runs inside the command's first transaction: it begins the transition (compare-and-set,
committed by the command before the host is called) and builds what the host gets. `run` calls the
kind's agent verb and finishes the transition in a second short transaction:

    host did it                 -> plugged / unplugged
    unplug answered pending     -> stays unplugging (an event or reconciliation finishes it)
    host has no such device     -> unplugged (the goal of an unplug is reached)
    host refused                -> back where it was, with the host's error on the row
    host never reached          -> back exactly as it was
    request sent, no answer     -> stays in flight, marked unanswered: the host may have acted;
                                   reconciliation settles it, or sends it again, once the host answers

`resume` builds the call of a transition already in flight that reconciliation sends again; a host
that is not reached then leaves it in flight, unanswered, rather than rolling the user's request back.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from engine import agent_codes, metrics
from engine.dao import db
from engine.dao.vm_versions import VmVersion
from engine.dao.models import Host, VmDevice
from engine.devices import state
from engine.devices.state import Before, Subject
from engine.errors import EngineError, HostCallFailed, HostUnreachable
from engine.hostclient import HostClientFactory


@dataclass(frozen=True)
class LiveCall:
    """Everything `run` needs once the transition is committed (plain values: the rows are gone
    with their session)."""

    subject: Subject
    host: Host
    plug: bool
    payload: dict[str, Any]
    before: Before | None       # None: sent again by reconciliation (nothing to roll back to)

    @property
    def verb(self) -> str:
        kind = self.subject.kind
        return kind.plug_verb if self.plug else kind.unplug_verb


class Finishing:
    """The live operations of this process that are between their host call and the commit of their
    last transaction, by (VM id, device alias).

    The agent journals a device's DEVICE_REMOVED an instant before it answers the unplug, so the
    monitor's transaction that applies the event and the command's final one would run at once and
    one would wait for the other's write lock. The monitor applies a device event once the operation
    on that device here, if any, has finished (`wait`). The outcome is the same in either order --
    the second finds the row settled and changes nothing -- only the wait moves off the request."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running: Counter[tuple[str, str]] = Counter()

    @staticmethod
    def _key(vm_id: str, alias: str) -> tuple[str, str]:
        return vm_id.lower(), alias

    @contextmanager
    def running(self, vm_id: str, alias: str) -> Iterator[None]:
        key = self._key(vm_id, alias)
        with self._cond:
            self._running[key] += 1
        try:
            yield
        finally:
            with self._cond:
                self._running[key] -= 1
                if self._running[key] <= 0:
                    del self._running[key]
                self._cond.notify_all()

    def wait(self, devices: Iterable[tuple[str, str]], timeout: float) -> bool:
        """Wait until no operation runs on any of `devices` ((VM id, alias) pairs), at most `timeout`
        seconds; True when none runs."""
        keys = {self._key(vm_id, alias) for vm_id, alias in devices}
        if not keys:
            return True
        with self._cond:
            return self._cond.wait_for(lambda: keys.isdisjoint(self._running), timeout)


#: This process's live operations in their last stretch (see Finishing).
FINISHING = Finishing()


def _payload(dev: VmDevice, subject: Subject, *, plug: bool) -> dict[str, Any]:
    payload = subject.kind.payload(dev) if plug else subject.kind.ref(dev)
    if plug:
        payload.pop("address", None)    # a hot plug lets libvirt pick a free slot
    return payload


def prepare(s: Session, dev: VmDevice, subject: Subject, host: Host, *, plug: bool,
            unchanged: VmVersion | None = None) -> LiveCall:
    """`unchanged`: the VM was read without a lock (state.begin)."""
    payload = _payload(dev, subject, plug=plug)
    before = state.begin(s, subject, plug=plug, unchanged=unchanged)
    return LiveCall(subject=subject, host=host, plug=plug, payload=payload, before=before)


def resume(dev: VmDevice, subject: Subject, host: Host, *, plug: bool) -> LiveCall:
    """The call of a transition already in flight (state.resent), to be sent again."""
    return LiveCall(subject=subject, host=host, plug=plug, payload=_payload(dev, subject, plug=plug), before=None)


def host_error(err: EngineError, verb: str) -> dict[str, Any]:
    """A device's last_error after a failed host call."""
    return {"code": err.host_code, "message": err.host_message or err.message, "fault": err.code,
            "host": err.host, "verb": verb, "time": datetime.now(timezone.utc).isoformat()}


@contextmanager
def _transaction(sessions: sessionmaker[Session], session: Session | None, call: LiveCall) -> Iterator[Session]:
    """The transaction that finishes `call`: of its own session, or of `session`. A kind whose
    finishing transitions are one statement each finishes in a transaction of one statement (on
    PostgreSQL without BEGIN and COMMIT: db.one_statement)."""
    with ExitStack() as stack:
        s = session if session is not None else stack.enter_context(sessions())
        stack.enter_context(db.one_statement(s) if call.subject.kind.finishes_in_one_statement else s.begin())
        yield s


def run(sessions: sessionmaker[Session], hosts: HostClientFactory, call: LiveCall, *,
        session: Session | None = None) -> bool:
    """Call the host and finish the transition. True when an unplug is still pending in the guest.

    `session`: finish in a new transaction of this session (the one `prepare` ran in, its transaction
    committed), so that the rows it loaded take the values the transition writes (read back by its
    UPDATE's RETURNING). What happens is decided by the compare-and-set in SQL, never by those rows.

    Every live operation of every kind passes here, so it is timed and counted here, by outcome
    (engine.metrics)."""
    started = time.monotonic()
    outcome = "error"
    try:
        with FINISHING.running(call.subject.vm_id, call.subject.alias):
            pending = _run(sessions, hosts, call, session)
        outcome = "pending" if pending else "ok"
        return pending
    except HostCallFailed:
        outcome = "failed"
        raise
    except HostUnreachable as err:
        outcome = "unknown" if err.outcome_unknown else "unreachable"
        raise
    finally:
        metrics.device_operation(call.subject.kind.type, call.plug, outcome, time.monotonic() - started)


def _run(sessions: sessionmaker[Session], hosts: HostClientFactory, call: LiveCall,
         session: Session | None) -> bool:
    subject, host = call.subject, call.host
    try:
        result = hosts(host).call(call.verb, {"vmId": subject.vm_id, subject.kind.param: call.payload}) or {}
    except HostUnreachable as err:
        _unreachable(sessions, call, err, session)
        raise
    except HostCallFailed as err:
        with _transaction(sessions, session, call) as s:
            if not call.plug and err.host_code == agent_codes.code("deviceNotFound"):
                state.unplugged(s, subject, why=f": host {host.name} no longer had it", severity="warning",
                                err=err)
                return False
            text = (f"Failed to {'plug' if call.plug else 'unplug'} {subject.label} "
                    f"{'into' if call.plug else 'from'} VM {subject.vm_name}: host {host.name} answered "
                    f"{err.host_code} {err.host_message}")
            finish = state.plug_failed if call.plug else state.unplug_failed
            finish(s, subject, host_error(err, call.verb), text, err=err)
        raise
    with _transaction(sessions, session, call) as s:
        if call.plug:
            state.plugged(s, subject, result.get("address"))
            return False
        if result.get("status") == "pending":
            state.unplug_pending(s, subject)
            return True
        state.unplugged(s, subject, elapsed=result.get("elapsed"))
        return False


def _unreachable(sessions: sessionmaker[Session], call: LiveCall, err: HostUnreachable,
                 session: Session | None) -> None:
    """Never reached: the device goes back as it was. Sent but unanswered: the host may have acted, so
    the device stays in flight until the monitor reads the host's truth."""
    subject = call.subject
    message = f"Host {call.host.name} could not be reached: {err.message}"
    with _transaction(sessions, session, call) as s:
        if not err.outcome_unknown and call.before is not None:
            state.rolled_back(s, subject, plug=call.plug, before=call.before, message=message)
            return
        state_word = "plugging" if call.plug else "unplugging"
        state.host_silent(s, subject, f"{message}; whether it acted is unknown, {subject.label} stays "
                          f"{state_word} until the host answers", plug=call.plug)
