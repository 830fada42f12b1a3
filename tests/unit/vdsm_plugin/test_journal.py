from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import jsonschema
import pytest

from vdsm_plugin import contract
from vdsm_plugin.journal import Journal

VM = "5b0ac2a4-0e5e-4d47-9a8c-3f2b1c6d7e8f"


@pytest.fixture
def journal(tmp_path: Path):
    j = Journal(tmp_path / "state" / "events.db")
    yield j
    j.close()


def test_append_and_read_in_order(journal):
    s1 = journal.append("device_removed", vm_id=VM, alias="ua-nic1", data={"elapsed": 0.2})
    s2 = journal.append("vm_lifecycle", vm_id=VM, data={"event": "stopped"})
    s3 = journal.append("hostdev_added", data={"name": "usb_1_4_2"})
    assert s1 < s2 < s3
    events, last = journal.read()
    assert last == s3
    assert [e["seq"] for e in events] == [s1, s2, s3]
    assert events[0]["kind"] == "device_removed"
    assert (events[0]["vmId"], events[0]["alias"], events[0]["data"]) == (VM, "ua-nic1", {"elapsed": 0.2})
    assert events[2]["vmId"] is None and events[2]["alias"] is None
    assert events[1]["time"] <= events[2]["time"] <= time.time()
    assert set(events[0]) == {"seq", "time", "kind", "vmId", "alias", "data"}
    schema = contract.verbs()["Host.getEvents"]["result"]
    jsonschema.validate({"events": events, "last": last}, schema)


def test_data_defaults_to_an_empty_object(journal):
    journal.append("device_removal_failed", vm_id=VM, alias="ua-x")
    assert journal.read()[0][0]["data"] == {}


def test_unknown_kind_is_refused(journal):
    with pytest.raises(ValueError):
        journal.append("device_exploded")
    assert journal.read() == ([], 0)


def test_after_filters(journal):
    seqs = [journal.append("vm_lifecycle", vm_id=VM, data={"n": n}) for n in range(5)]
    events, last = journal.read(after=seqs[2])
    assert [e["data"]["n"] for e in events] == [3, 4]
    assert last == seqs[-1]
    assert journal.read(after=seqs[-1]) == ([], seqs[-1])


def test_limit(journal):
    seqs = [journal.append("vm_lifecycle", data={"n": n}) for n in range(10)]
    events, last = journal.read(limit=3)
    assert [e["seq"] for e in events] == seqs[:3]
    assert last == seqs[-1]  # the caller sees there is more
    events, _ = journal.read(after=events[-1]["seq"], limit=3)
    assert [e["seq"] for e in events] == seqs[3:6]


def test_long_poll_wakes_when_another_thread_appends(journal):
    last = journal.append("vm_lifecycle", data={"event": "started"})
    timer = threading.Timer(0.2, lambda: journal.append("device_removed", vm_id=VM, alias="ua-nic1"))
    timer.start()
    t0 = time.monotonic()
    events, new_last = journal.read(after=last, timeout=10)
    elapsed = time.monotonic() - t0
    timer.join()
    assert [e["alias"] for e in events] == ["ua-nic1"]
    assert new_last == last + 1
    assert 0.1 < elapsed < 5


def test_long_poll_times_out_empty(journal):
    last = journal.append("vm_lifecycle")
    t0 = time.monotonic()
    assert journal.read(after=last, timeout=0.3) == ([], last)
    assert 0.25 <= time.monotonic() - t0 < 3


def test_stop_polls_answers_the_long_polls_at_once_and_lets_the_agents_own_waits_go_on(journal):
    """A stopping agent answers the engine's long polls now rather than at their timeout (its server
    waits for every request in progress); an unplug waiting for its device's removal still gets it."""
    last = journal.append("vm_lifecycle")
    answers: list[object] = []
    polling = threading.Thread(target=lambda: answers.append(journal.read(after=last, timeout=60, poll=True)))
    removal = threading.Thread(target=lambda: answers.append(journal.wait_for(
        lambda e: e["alias"] == "ua-nic1", timeout=60, after=last)))
    polling.start()
    removal.start()
    time.sleep(0.2)
    journal.stop_polls()
    polling.join(5)
    assert not polling.is_alive() and answers == [([], last)]
    assert journal.read(after=last, timeout=60, poll=True) == ([], last)      # and any poll after
    assert removal.is_alive()
    journal.append("device_removed", vm_id=VM, alias="ua-nic1")
    removal.join(5)
    assert not removal.is_alive() and answers[-1]["alias"] == "ua-nic1"


def test_read_after_a_seq_beyond_the_journal_answers_at_once(journal):
    journal.append("vm_lifecycle")
    t0 = time.monotonic()
    assert journal.read(after=999, timeout=5) == ([], 1)
    assert time.monotonic() - t0 < 1


def test_persistence_across_reopen_and_seq_continues(tmp_path):
    path = tmp_path / "events.db"
    with Journal(path) as j:
        first = j.append("device_removed", vm_id=VM, alias="ua-a")
        second = j.append("device_removed", vm_id=VM, alias="ua-b")
    with Journal(path) as j:
        events, last = j.read()
        assert [e["alias"] for e in events] == ["ua-a", "ua-b"]
        assert last == second == first + 1
        assert j.append("vm_lifecycle") == second + 1


def test_wal_mode_and_one_table(journal):
    journal.append("vm_lifecycle")
    db = sqlite3.connect(journal.path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        cols = [r[1] for r in db.execute("PRAGMA table_info(events)")]
        assert cols == ["seq", "time", "kind", "vm_id", "alias", "data"]
    finally:
        db.close()


def test_retention_keeps_the_last_n_and_seq_never_goes_back(tmp_path):
    path = tmp_path / "events.db"
    with Journal(path, keep=5) as j:
        seqs = [j.append("vm_lifecycle", data={"n": n}) for n in range(12)]
        events, last = j.read(limit=100)
        assert [e["seq"] for e in events] == seqs[-5:]
        assert last == seqs[-1]
    with Journal(path, keep=5) as j:
        assert j.append("vm_lifecycle") == seqs[-1] + 1


def test_seq_survives_even_when_every_row_was_pruned(tmp_path):
    path = tmp_path / "events.db"
    with Journal(path, keep=1) as j:
        j.append("vm_lifecycle")
        j.append("vm_lifecycle")
    db = sqlite3.connect(path)
    db.execute("DELETE FROM events")
    db.commit()
    db.close()
    with Journal(path) as j:
        assert j.read() == ([], 2)
        assert j.last == 2
        assert j.append("vm_lifecycle") == 3


def test_concurrent_appends_get_unique_increasing_seqs(journal):
    per_thread, threads = 50, 8
    results: dict[int, list[int]] = {}
    barrier = threading.Barrier(threads)

    def worker(n: int) -> None:
        barrier.wait()
        results[n] = [journal.append("hostdev_added", data={"t": n, "i": i}) for i in range(per_thread)]

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    all_seqs = [s for seqs in results.values() for s in seqs]
    assert len(set(all_seqs)) == per_thread * threads
    assert sorted(all_seqs) == list(range(1, per_thread * threads + 1))
    for seqs in results.values():  # each thread sees its own appends in order
        assert seqs == sorted(seqs)
    events, last = journal.read(limit=1000)
    assert [e["seq"] for e in events] == sorted(all_seqs)
    assert last == per_thread * threads


def test_many_long_pollers_are_all_woken(journal):
    got: list[list[dict]] = []

    def reader() -> None:
        got.append(journal.read(after=0, timeout=10)[0])

    pool = [threading.Thread(target=reader) for _ in range(4)]
    for t in pool:
        t.start()
    time.sleep(0.1)
    journal.append("hostdev_removed", data={"name": "usb_2_1"})
    for t in pool:
        t.join(5)
    assert [len(events) for events in got] == [1, 1, 1, 1]


def test_wait_for(journal):
    journal.append("device_removed", vm_id=VM, alias="ua-old")
    threading.Timer(0.1, lambda: journal.append("vm_lifecycle", vm_id=VM)).start()
    threading.Timer(0.2, lambda: journal.append("device_removed", vm_id=VM, alias="ua-new")).start()
    event = journal.wait_for(lambda e: e["kind"] == "device_removed", timeout=5, after=1)
    assert event is not None and event["alias"] == "ua-new"
    assert journal.wait_for(lambda e: e["kind"] == "hostdev_dropped", timeout=0.2) is None
