"""`plugboard engine serve` as a deployment runs it: gunicorn's arbiter and its workers in processes of
their own, against simulated agents (tests/sim). One process of the deployment holds the monitor's
lease and applies each agent event once; when it dies another takes over.

On SQLite (the integration tier) the engine is one worker, which watches the hosts; on PostgreSQL (the
pg-integration tier) the monitor is a process of its own beside the workers, and two replicas of two
workers each share one database."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from engine.dao import db
from tests import testdb
from tests.sim.agent import SimAgents, usb_device
from tests.unit.engine.tokens import issue_token

ROOT = Path(__file__).resolve().parents[3]
PG_URL = testdb.url() or ""
LEASE_KEY = db.LOCKS["monitor"]


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, probe: Callable[[], object], timeout: float = 30.0, every: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


class Server:
    """One `plugboard engine serve` process tree (one replica)."""

    def __init__(self, state: Path, db_url: str, workers: int, extra: list[str] | None = None) -> None:
        state.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = state / "engine.log"
        env = {**os.environ, "PLUGBOARD_STATE_DIR": str(state), "PLUGBOARD_DB_URL": db_url,
               "PLUGBOARD_POLL_TIMEOUT": "1", "PLUGBOARD_RECONCILE_INTERVAL": "2"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "plugboard.cli", "engine", "serve", "--listen", f"127.0.0.1:{self.port}",
             "--workers", str(workers), *(extra or [])], stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=ROOT, env=env, start_new_session=True)
        wait_for(f"the engine on {self.url}", self.answers, timeout=60)

    def answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the engine exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        try:
            return requests.get(f"{self.url}/api/openapi.json", timeout=2).ok
        except requests.RequestException:
            return False

    def workers(self) -> set[int]:
        return self._children("worker")

    def monitors(self) -> set[int]:
        return self._children("monitor")

    def _children(self, role: str) -> set[int]:
        """The arbiter's children by the title gunicorn gives them (`gunicorn: worker [plugboard-engine]`)."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        pids = set()
        for pid in map(int, out.split()):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if title.startswith(f"gunicorn: {role} "):
                pids.add(pid)
        return pids

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def agents() -> Iterator[SimAgents]:
    sim = SimAgents(usb=1, pci=0)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def database(tmp_path) -> Iterator[tuple[str, object]]:
    url = PG_URL or f"sqlite:///{tmp_path}/engine.db"
    if PG_URL:
        db.drop_all(db.make_engine(url))
    db.upgrade(url)
    engine = db.make_engine(url)
    yield url, db.make_sessions(engine)
    engine.dispose()


def register(server: Server, sessions, agents: SimAgents, n: int = 1) -> str:
    token = issue_token(sessions)
    answer = requests.post(f"{server.url}/api/hosts", json={"name": f"sim{n}", "url": agents.url(n)},
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def plug_and_count(agents: SimAgents, sessions, k: int) -> int:
    """A new USB device on host 1; waits until the engine has it, then returns how many times the
    engine applied the journal's hostdev_added (each application reads that device by name)."""
    host = agents.host(1)
    dev = usb_device(1, k)
    host.plug_hostdev(dev)

    def stored() -> bool:
        with sessions.begin() as s:
            return bool(s.execute(text("SELECT count(*) FROM host_devices WHERE name = :n"),
                                  {"n": dev["name"]}).scalar())
    wait_for(f"device {dev['name']} in the inventory", stored, timeout=30)
    time.sleep(1.5)     # a second monitor, if there were one, would have applied it too by now
    return sum(1 for p in host.sent("Host.hostdevListByCaps") if dev["name"] in (p.get("names") or ()))


def pg_lease_holder(sessions) -> int | None:
    """The pid (as `application_name` tells it) of the process holding the monitor's advisory lock."""
    with sessions.begin() as s:
        names = s.execute(text(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = :key"),
            {"key": LEASE_KEY}).scalars().all()
    assert len(names) <= 1, names
    return int(names[0].rpartition(":")[2]) if names else None


def sockets_of(pids: set[int], port: int, state: str) -> dict[int, int]:
    """How many TCP sockets on local port `port` in `state` ('0A' listening, '01' established; the
    hex codes of /proc/net/tcp) each of `pids` holds."""
    inodes: dict[str, int] = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes[target[8:-1]] = pid
    held = dict.fromkeys(pids, 0)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rpartition(":")[2], 16) == port and fields[3] == state and fields[9] in inodes:
                held[inodes[fields[9]]] += 1
    return held


def process_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat (after the name, which may hold spaces), None once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return None


def file_lease_holder(url: str) -> int | None:
    path = Path(url.removeprefix("sqlite:///") + ".monitor.lock")
    text_ = path.read_text() if path.exists() else ""
    return int(text_.strip().rpartition(":")[2]) if text_.strip() else None


@pytest.mark.skipif(bool(PG_URL), reason="the SQLite deployment; the pg-integration tier runs the replicas below")
def test_on_sqlite_one_worker_watches_and_a_graceful_restart_hands_the_lease_over(tmp_path, database, agents):
    url, sessions = database
    server = Server(tmp_path / "engine", url, workers=1)
    try:
        register(server, sessions, agents)
        (worker,) = server.workers()
        assert server.monitors() == set()       # SQLite: one process, its worker watches
        assert wait_for("the lease", lambda: file_lease_holder(url)) == worker
        assert plug_and_count(agents, sessions, 5) == 1

        os.kill(server.proc.pid, signal.SIGHUP)         # gunicorn: new workers, the old ones finish
        wait_for("a new worker", lambda: server.workers() and server.workers() != {worker}, timeout=60)
        (new,) = wait_for("one worker", lambda: len(server.workers()) == 1 and server.workers(), timeout=60)
        assert wait_for("the lease moving", lambda: file_lease_holder(url) == new and new, timeout=30) == new
        assert server.answers()
        assert plug_and_count(agents, sessions, 6) == 1
        # the workers' metrics, the one that left included, summed from the metrics directory
        metrics = requests.get(f"{server.url}/metrics", timeout=5).text
        reads = [line for line in metrics.splitlines() if line.startswith("plugboard_host_call_seconds_count{")
                 and 'verb="Host.hostdevListByCaps"' in line]
        assert reads and sum(float(line.rsplit(" ", 1)[1]) for line in reads) >= 3
    finally:
        server.stop()


@pytest.mark.skipif(bool(PG_URL), reason="SQLite only")
def test_on_sqlite_more_than_one_worker_is_refused(tmp_path):
    run = subprocess.run([sys.executable, "-m", "plugboard.cli", "engine", "serve", "--workers", "2"],
                         env={**os.environ, "PLUGBOARD_STATE_DIR": str(tmp_path)}, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "engine.workers" in run.stderr and "PostgreSQL" in run.stderr


@pytest.mark.skipif(not PG_URL, reason="replicas share a PostgreSQL database (the pg-integration tier)")
def test_two_replicas_on_postgresql_watch_once_and_take_over_when_the_leader_dies(tmp_path, database, agents):
    url, sessions = database
    replicas = [Server(tmp_path / f"engine{i}", url, workers=2) for i in range(2)]
    try:
        register(replicas[0], sessions, agents)
        assert [len(r.workers()) for r in replicas] == [2, 2]
        monitors = [wait_for("a monitor process", r.monitors) for r in replicas]
        assert [len(m) for m in monitors] == [1, 1]
        leader = wait_for("a leader", lambda: pg_lease_holder(sessions))
        assert leader in set().union(*monitors)     # a monitor process, not a worker
        assert plug_and_count(agents, sessions, 5) == 1
        for r in replicas:      # both serve the same API
            assert requests.get(f"{r.url}/readyz", timeout=5).status_code == 200

        (home,) = [r for r, m in zip(replicas, monitors) if leader in m]
        os.kill(leader, signal.SIGKILL)
        started = time.monotonic()
        successor = wait_for("another leader", lambda: (pg_lease_holder(sessions) or leader) != leader
                             and pg_lease_holder(sessions), timeout=30)
        print(f"\nthe monitor's lease moved from monitor process {leader} to {successor} "
              f"in {time.monotonic() - started:.1f} s")
        assert plug_and_count(agents, sessions, 6) == 1
        # the leader's arbiter forked another monitor, which stands by
        wait_for("a new monitor process", lambda: home.monitors() - {leader}, timeout=30)
        assert f"monitor process {leader} was killed by SIGKILL; another one takes its place" in home.log.read_text()
    finally:
        for r in replicas:
            r.stop()


@pytest.mark.skipif(not PG_URL, reason="the monitor's own process is the PostgreSQL deployment's")
def test_on_postgresql_a_graceful_restart_replaces_the_monitor_process_and_a_stop_ends_it(tmp_path, database, agents):
    url, sessions = database
    server = Server(tmp_path / "engine", url, workers=1)
    try:
        register(server, sessions, agents)
        (first,) = wait_for("the monitor process", server.monitors)
        assert wait_for("the lease", lambda: pg_lease_holder(sessions)) == first
        assert plug_and_count(agents, sessions, 5) == 1

        os.kill(server.proc.pid, signal.SIGHUP)
        (second,) = wait_for("a new monitor process", lambda: server.monitors() - {first}, timeout=30)
        assert wait_for("the lease moving", lambda: pg_lease_holder(sessions) == second, timeout=30)
        assert f"monitor process {first} exited with code 0" in server.log.read_text()
        assert plug_and_count(agents, sessions, 6) == 1
    finally:
        server.stop()
    assert server.proc.returncode == 0
    assert not Path(f"/proc/{second}").exists()     # stopped with the arbiter, not left behind
    wait_for("the lease let go", lambda: pg_lease_holder(sessions) is None, timeout=10)


@pytest.mark.skipif(not PG_URL, reason="the monitor's own process is the PostgreSQL deployment's")
def test_on_postgresql_the_monitor_process_ends_with_its_arbiter_and_lets_go_of_the_lease(tmp_path, database):
    """An arbiter killed outright leaves no orphan monitor holding the lease where nothing supervises it."""
    url, sessions = database
    server = Server(tmp_path / "engine", url, workers=1)
    try:
        (monitor,) = wait_for("the monitor process", server.monitors)
        assert wait_for("the lease", lambda: pg_lease_holder(sessions)) == monitor
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)
        wait_for("the monitor process ending", lambda: process_state(monitor) in (None, "Z"), timeout=30)
        wait_for("the lease let go", lambda: pg_lease_holder(sessions) is None, timeout=10)
        assert f"monitor process {monitor}: the arbiter {server.proc.pid} is gone; stopping" in server.log.read_text()
    finally:
        server.stop()
        with contextlib.suppress(ProcessLookupError):     # the workers, had they outlived it
            os.killpg(server.proc.pid, signal.SIGKILL)


@pytest.mark.skipif(not PG_URL, reason="a monitor apart from the servers shares their PostgreSQL database")
def test_servers_without_a_monitor_and_a_monitor_of_their_own_elsewhere(tmp_path, database, agents):
    url, sessions = database
    server = Server(tmp_path / "engine", url, workers=1, extra=["--no-monitor"])
    monitor = subprocess.Popen([sys.executable, "-m", "plugboard.cli", "engine", "monitor"], cwd=ROOT,
                               stdout=(tmp_path / "monitor.log").open("ab"), stderr=subprocess.STDOUT,
                               env={**os.environ, "PLUGBOARD_STATE_DIR": str(tmp_path / "engine"),
                                    "PLUGBOARD_DB_URL": url, "PLUGBOARD_POLL_TIMEOUT": "1"})
    try:
        register(server, sessions, agents)
        assert server.monitors() == set()
        assert wait_for("the lease", lambda: pg_lease_holder(sessions)) == monitor.pid
        assert plug_and_count(agents, sessions, 5) == 1
        monitor.terminate()
        assert monitor.wait(30) == 0
        wait_for("the lease let go", lambda: pg_lease_holder(sessions) is None, timeout=10)
    finally:
        if monitor.poll() is None:
            monitor.kill()
        server.stop()


@pytest.mark.skipif(not PG_URL, reason="more than one worker needs PostgreSQL (the pg-integration tier)")
def test_on_postgresql_each_worker_listens_on_a_socket_of_its_own(tmp_path, database):
    """One socket shared by the workers let the first to wake take a burst of keep-alive connections
    (37 of 50 on one of two workers); with a socket each the kernel spreads them. A second server on
    the same port would then bind silently and take half of them: it is refused."""
    url, _sessions = database
    server = Server(tmp_path / "engine", url, workers=2)
    try:
        workers = server.workers()
        assert len(workers) == 2
        others = {server.proc.pid} | wait_for("the monitor process", server.monitors)   # they serve nothing
        assert sockets_of(workers | others, server.port, "0A") == {**dict.fromkeys(workers, 1),
                                                                    **dict.fromkeys(others, 0)}
        clients = [requests.Session() for _ in range(40)]
        for c in clients:
            c.trust_env = False
            assert c.get(f"{server.url}/healthz", timeout=10).status_code == 200
        held = sockets_of(workers, server.port, "01")
        print(f"\n40 keep-alive connections over the workers: {sorted(held.values())}")
        assert sum(held.values()) == 40 and min(held.values()) > 0, held
        for c in clients:
            c.close()

        second = subprocess.run(
            [sys.executable, "-m", "plugboard.cli", "engine", "serve", "--listen", f"127.0.0.1:{server.port}",
             "--workers", "2"], cwd=ROOT, capture_output=True, text=True, timeout=60,
            env={**os.environ, "PLUGBOARD_STATE_DIR": str(tmp_path / "second"), "PLUGBOARD_DB_URL": url})
        assert second.returncode == 2, second.stderr
        assert f"engine.listen: cannot listen on 127.0.0.1:{server.port}: something else listens there" \
            in second.stderr
        assert sockets_of(workers, server.port, "0A") == dict.fromkeys(workers, 1)
    finally:
        server.stop()
