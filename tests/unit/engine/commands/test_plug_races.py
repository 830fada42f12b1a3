"""50 concurrent activate/deactivate requests on one device, on SQLite and on PostgreSQL
(PLUGBOARD_TEST_DB_URL): one wins and reaches the host, every other is refused with a 409 -- the
device is in flight or already in the asked state -- and nothing is left half done.

The winner's host call is held until every other request has been answered, so that all of them meet
the device in flight (with an instant fake host a late request could start a second, legitimate,
operation once the first is over)."""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from engine.commands import plug_unplug_nic
from engine.errors import EngineError
from tests.unit.engine.commands.test_concurrency import refusals
from tests.unit.engine.fakehost import FakeHost
from tests.unit.engine.race import race

REQUESTS = 50
PLUG_VERBS = ("VM.hotplugNic", "VM.hotunplugNic")


class HeldHost:
    """`fake`, whose plug and unplug calls wait until `released()` says so (or 20 s)."""

    def __init__(self, fake: FakeHost, released) -> None:
        self.fake = fake
        self.released = released

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fake, name)

    def call(self, verb: str, params: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        if verb in PLUG_VERBS:
            deadline = time.monotonic() + 20
            while not self.released() and time.monotonic() < deadline:
                time.sleep(0.01)
        return self.fake.call(verb, params, **kw)


@pytest.mark.parametrize("plugged,plugs", [
    (True, [False] * REQUESTS),                               # 50 deactivates of a plugged NIC
    (False, [True] * REQUESTS),                               # 50 activates of an unplugged NIC
    (True, [i % 2 == 0 for i in range(REQUESTS)]),            # mixed, from plugged
    (False, [i % 2 == 0 for i in range(REQUESTS)]),           # mixed, from unplugged
])
def test_50_plugs_and_unplugs_of_one_nic_one_wins(race_sessions, fake, up_vm, make_nic, db, plugged, plugs):
    nic = make_nic(up_vm, is_plugged=plugged, mac="56:6f:1a:00:50:50")
    if plugged:
        fake.domain(up_vm.id).devices.append({"type": "interface", "device": "bridge", "alias": nic.device.alias,
                                              "macAddr": nic.mac, "network": "ovirtmgmt"})
    answered = 0
    lock = threading.Lock()
    held = HeldHost(fake, lambda: answered >= REQUESTS - 1)

    def attempt(i: int) -> Any:
        nonlocal answered
        try:
            return plug_unplug_nic.execute(race_sessions, lambda _host: held,
                                           plug_unplug_nic.Params(up_vm.id, nic.id, plug=plugs[i]))
        finally:
            with lock:
                answered += 1

    results = race(REQUESTS, attempt)
    won = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
    lost = refusals(results)
    assert len(won) == 1 and len(lost) == REQUESTS - 1, results
    for err in lost:
        assert isinstance(err, EngineError) and err.status == 409, err
    winner_plugs = plugs[won[0]]
    assert winner_plugs != plugged                             # only the change could win
    sent = [v for v in fake.verbs() if v in PLUG_VERBS]
    assert sent == [PLUG_VERBS[0] if winner_plugs else PLUG_VERBS[1]]
    is_plugged, plug_state, *_ = db.device_state(nic.id)
    assert (is_plugged, plug_state) == (winner_plugs, "stable")
