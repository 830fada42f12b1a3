"""Scale by simulation: the engine with 10, 100 and 1,000 simulated hosts of 10 running VMs each.

    .venv/bin/python bench/scale.py [--steps 10,100,1000] [--vms 10] [--db-url URL] [--workers N] [--monitor-in-workers]
                                    [--lock /tmp/plugboard-vm.lock --lock-from 1000] [--out results.json]

Three kinds of processes besides the database: the simulated agents (tests/sim/agent.py: every host
behind one HTTP server, http://127.0.0.1:<port>/h/<n>/jsonrpc, zero latency unless --latency), the
engine, and this process, which registers hosts and VMs, emits the agents' events, drives the REST
clients and reads the rows. The engine runs in one of two ways:

  --workers N (N >= 1; the default on PostgreSQL, with N = 2)
                  the real `plugboard engine serve --workers N`: gunicorn's arbiter and N worker
                  processes ($PLUGBOARD_THREADS threads each, 8 unless set) and, on PostgreSQL, the
                  monitor's process of its own beside them; its database URL, state dir and address
                  through its environment, its log appended to engine.log, stopped by SIGTERM to its
                  process group
  --monitor-in-workers
                  with workers: every worker stands for the monitor's lease and the holder serves
                  requests too (monitor.own_process = false), to compare with the monitor's own process
  --workers 0     (the default on SQLite) the single-process engine `serve` used to be: this file run
                  with --engine-child (plugboard.engine_main.build, the startup reconciliation, the
                  monitor, werkzeug's threaded server), which reports its reconciliation time and its
                  threads' CPU over a pipe

For each step, hosts are added (POST /api/hosts) with --vms VMs each (POST /api/vms, one NIC, start on
that host) to reach the step's count -- through the engine's REST app run in this process while no
engine runs (the same routes and commands, without a monitor competing for the setup) -- then the
engine is started and measured:

  reconciliation  the reconciliation of every host before the monitor watches: with --workers 0 the
                  startup one (Monitor.reconcile_all(startup=True), what `serve` ran before it
                  listened): wall time and the engine's CPU during it. With workers, the one the lease's
                  holder runs on taking it (its log line `reconciliation on taking the lease: N
                  change(s) in X s`, read from engine.log; startup=False on PostgreSQL, since other
                  workers may already serve), the lease holder's CPU during it, and the time from the
                  server's start to that line and to the first answer on /healthz (listening)
  warm-up         from the engine being up (listening; with workers, also that reconciliation's line
                  seen: the monitor starts then) until every host has a long poll (Host.getEvents)
                  parked on its agent
  steady state    the engine idle for --steady seconds (default 65: one periodic reconciliation falls
                  in it): CPU of the whole engine (with workers: of all its processes) and of its
                  monitor (with workers: of the leader's process, the one whose pid the lease's
                  PostgreSQL connection is named after; threads' CPU is not readable across processes),
                  % of one core; RSS (with workers: the sum over the processes, the largest worker's,
                  and the processes' PSS, in which pages shared since the fork count once), threads and
                  open files (summed)
  event-to-row    NICs are deactivated while the agents answer `pending` (rows: unplugging); then the
                  agents' guests release them at --event-rate events/s (device_removed in each host's
                  journal, emitted by the simulation), and this process polls the rows every 10 ms:
                  latency = row seen no longer unplugging - event's journal time. Repeated in cycles
                  until --event-rate x --event-seconds events are measured
  REST            --clients concurrent clients (keep-alive sessions, a bearer token) for --rest-seconds
                  each: GET /api/vms (its first page: up to 1,000 VMs), GET /api/vms/<id>/nics, then
                  deactivate and activate (unplug + plug) of NICs, each client on its own NICs (no 409
                  between them). Each phase also reads the machine's busy CPU (every process: engine,
                  database, agents, clients) per call: in a closed loop the mean latency cannot be below
                  clients x that / cores, the floor the table prints next to the mean. Then the same
                  clients deactivate and activate rows of engine_overhead's bare Flask app (one one-row
                  UPDATE a request) under gunicorn with the engine's workers, on the same database, next
                  to the engine: what any Python server of a write gets from this machine under this load

The table at the end shows each figure for every step, with the issue's target next to it. The
database is wiped at start: --db-url, else $PLUGBOARD_TEST_DB_URL, else SQLite in a temporary
directory. `--lock PATH --lock-from N` holds flock(PATH) from the step that grows to N hosts on.
A short run: --steps 10 --steady 15 --event-seconds 5 --rest-seconds 5.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests
from sqlalchemy import bindparam, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import config  # noqa: E402
from engine.dao import db  # noqa: E402
from plugboard import gunicorn_app  # noqa: E402

TARGETS = {"reconcile_s": ("<= 60 s (1,000 hosts)", 60.0), "event_p99_ms": ("p99 <= 1,000 ms", 1000.0),
           "plug_p99_ms": ("p99 <= 200 ms", 200.0), "rss_mb": ("<= 500 MB", 500.0)}
NETWORK = "ovirtmgmt"
HOST_NAME = re.compile(r"^sim(\d+)$")
DRAIN = 120.0       # seconds after a burst of events that its rows may take to change


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))] if s else float("nan")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- the engine's process ----------------------------------------------------------------------------

class _Counter(logging.Handler):
    """Counts the engine's warnings and errors by logger, and keeps the first few messages."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: collections.Counter[str] = collections.Counter()
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[f"{record.levelname} {record.name}"] += 1
        if len(self.first) < 20:
            self.first.append(f"{record.levelname} {record.name}: {record.getMessage()[:300]}")


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of the live threads, by group: the monitor's (supervisor and long polls), the
    request threads, the rest."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    groups: dict[str, float] = collections.defaultdict(float)
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(tid), "")
        group = "monitor" if name.startswith("monitor") else \
            "requests" if "process_request_thread" in name else "other"
        groups[group] += (int(fields[11]) + int(fields[12])) / tick
    return dict(groups)


def engine_child(args: argparse.Namespace) -> int:
    """`plugboard engine serve`, step by step (plugboard.engine_main.serve), reporting on stdout."""
    if args.nofile:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, hard))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,    # as `plugboard engine serve` logs
                        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
    counter = _Counter()
    logging.getLogger().addHandler(counter)
    from plugboard.engine_main import build, make_http_server

    def say(**what: Any) -> None:
        print(json.dumps(what), flush=True)

    env = dict(os.environ, PLUGBOARD_STATE_DIR=args.state_dir, PLUGBOARD_LISTEN=args.listen)
    cfg = config.load(None, env=env)
    proc = psutil.Process()
    t0 = time.monotonic()
    app, monitor = build(cfg)
    built = time.monotonic() - t0
    c0, t1 = sum(proc.cpu_times()[:2]), time.monotonic()
    changed = monitor.reconcile_all(startup=True)
    seconds, cpu = time.monotonic() - t1, sum(proc.cpu_times()[:2]) - c0
    say(reconciled=seconds, changed=changed, build=built, cpu=cpu, rss=proc.memory_info().rss)
    monitor.start()
    server = make_http_server(app, cfg.listen_host, cfg.listen_port)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    say(listening=cfg.listen)
    for line in sys.stdin:
        if line.strip() == "stats":
            say(threads=_thread_cpu(), log=dict(counter.counts), first=counter.first)
    server.shutdown()
    monitor.stop(timeout=5)
    return 0


class Engine:
    """The engine's process, driven over stdin/stdout (see engine_child): --workers 0."""

    workers = 0

    def __init__(self, db_url: str, state_dir: str, log_path: Path, nofile: int | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The database URL (and its password) through the environment, not the command line.
        cmd = [sys.executable, str(Path(__file__).absolute()), "--engine-child", "--state-dir", state_dir,
               "--listen", f"127.0.0.1:{self.port}"]
        if nofile:
            cmd += ["--nofile", str(nofile)]
        self._log = open(log_path, "a")
        # Its own session, like the agents': a signal meant for this process's group does not cut the
        # engine off mid-measurement; closing its stdin stops it (also when this process dies).
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     text=True, cwd=ROOT, start_new_session=True,
                                     env=dict(os.environ, PLUGBOARD_DB_URL=db_url))
        self.ps = psutil.Process(self.proc.pid)
        started = time.monotonic()
        self.sampler = Sampler(self)
        rec = self._read("reconciled")
        self.start_to_reconciled_s = time.monotonic() - started
        self.reconcile_s, self.reconcile_cpu_s, self.reconcile_changed = rec["reconciled"], rec["cpu"], rec["changed"]
        self._read("listening")
        self.start_to_listen_s = time.monotonic() - started

    def _read(self, key: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the engine exited (code {self.proc.wait()}) before {key!r}; see {self._log.name}")
            msg = json.loads(line)
            if key in msg:
                return msg

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return self._read("threads")

    def procs(self) -> list[psutil.Process]:
        return [self.ps]

    def workers_of(self, procs: list[psutil.Process]) -> list[psutil.Process]:
        return procs

    def cpu(self) -> float:
        return float(sum(self.ps.cpu_times()[:2]))

    def monitor_cpu(self) -> float:
        """CPU seconds of the monitor's threads (supervisor and long polls)."""
        return float(self.stats()["threads"].get("monitor", 0.0))

    def log_counts(self) -> tuple[dict[str, int], list[str]]:
        stats = self.stats()
        return stats["log"], stats["first"]

    def stop(self) -> None:
        self.sampler.stop()
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


# `plugboard.logs` text lines, and gunicorn's own (its arbiter's and workers' messages).
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) (\S+) \[[^\]]*\]: (.*)$")
GUNICORN_LINE = re.compile(r"^\[[^\]]+\] \[\d+\] \[(\w+)\] (.*)$")
TOOK_LEASE = re.compile(r"monitor: this process holds the lease")
RECONCILED = re.compile(r"monitor: reconciliation on taking the lease: (\d+) change\(s\) in ([\d.]+) s")
RECONCILE_FAILED = re.compile(r"monitor: reconciliation on taking the lease failed")
HOLDER_PID = re.compile(r"^plugboard-monitor .*:(\d+)$")


def _nofile_limit(nofile: int | None) -> Any:
    """What the server's process does between fork and exec (nothing there may import or lock)."""
    libc = ctypes.CDLL(None, use_errno=True)

    def limit() -> None:
        if nofile:
            _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
        # The arbiter gets SIGTERM (a graceful stop of its workers) if this process dies unannounced;
        # in a session of its own, nothing else would stop it.
        libc.prctl(1, signal.SIGTERM)       # PR_SET_PDEATHSIG
    return limit


class Server:
    """`plugboard engine serve --workers N`: gunicorn's arbiter, its workers and (PostgreSQL) the
    monitor's own process, which holds the monitor's lease. The same interface as Engine; figures are
    summed over the process tree, and the monitor's are the lease holder's process's."""

    def __init__(self, db_url: str, state_dir: str, log_path: Path, workers: int, sessions: Any,
                 nofile: int | None = None, limit: float = 3600.0, monitor_in_workers: bool = False) -> None:
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._sessions = sessions
        self._log_path = log_path
        self._offset = log_path.stat().st_size if log_path.exists() else 0
        self._log = open(log_path, "a")
        self.reconcile_s = self.reconcile_cpu_s = self.start_to_reconciled_s = float("nan")
        self.reconcile_changed = 0
        env = dict(os.environ, PLUGBOARD_DB_URL=db_url, PLUGBOARD_STATE_DIR=state_dir,
                   PLUGBOARD_LISTEN=f"127.0.0.1:{self.port}", PLUGBOARD_LOG_FORMAT="text")
        # serve keeps the workers' metrics files in its state dir unless the environment names a directory.
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.pop("PLUGBOARD_WORKERS", None)
        if monitor_in_workers:
            env["PLUGBOARD_MONITOR_OWN_PROCESS"] = "false"
        cmd = [sys.executable, "-m", "plugboard.cli", "engine", "serve", "--workers", str(workers)]
        self._t0 = time.time()
        started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, cwd=ROOT,
                                     start_new_session=True, env=env, preexec_fn=_nofile_limit(nofile))
        self.ps = psutil.Process(self.proc.pid)
        self.sampler = Sampler(self)
        self.leader: int | None = None
        listening: list[float] = []
        probe = threading.Thread(target=self._probe, args=(listening,), daemon=True)
        probe.start()
        try:
            self._await_reconciliation(limit)
            probe.join(max(0.0, limit - (time.monotonic() - started)))
            if not listening:
                raise RuntimeError(f"the engine never answered on /healthz; see {log_path}")
        except BaseException:
            self.stop()
            raise
        self.start_to_listen_s = listening[0] - started
        self.leader = self._leader()

    def _probe(self, seen: list[float]) -> None:
        """Until a worker answers /healthz: its time, in `seen`."""
        session = requests.Session()
        session.trust_env = False
        while self.proc.poll() is None:
            try:
                session.get(self.url + "/healthz", timeout=1)
                seen.append(time.monotonic())
                return
            except requests.RequestException:
                time.sleep(0.02)

    def _read_log(self) -> list[str]:
        with open(self._log_path, errors="replace") as f:
            f.seek(self._offset)
            return f.read().splitlines()

    def _await_reconciliation(self, limit: float) -> None:
        """Waits for the lease holder's reconciliation line, sampling the workers' CPU meanwhile (the
        leader is known only once it holds the lease): its CPU between the two lines is the
        reconciliation's."""
        samples: dict[int, list[tuple[float, float]]] = collections.defaultdict(list)
        deadline = time.monotonic() + limit
        took: float | None = None
        pending = ""
        with open(self._log_path, errors="replace") as f:
            f.seek(self._offset)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the engine exited (code {self.proc.returncode}); see {self._log_path}")
                for p in self._children():
                    with contextlib.suppress(psutil.Error):
                        samples[p.pid].append((time.time(), float(sum(p.cpu_times()[:2]))))
                pending += f.read()
                *lines, pending = pending.split("\n")
                for line in lines:
                    m = LOG_LINE.match(line)
                    if not m:
                        continue
                    when = _log_time(m.group(1))
                    if TOOK_LEASE.search(m.group(4)):
                        took = when
                    elif RECONCILE_FAILED.search(m.group(4)):
                        raise RuntimeError(f"the leader's reconciliation failed; see {self._log_path}")
                    elif (r := RECONCILED.search(m.group(4))) is not None:
                        self.reconcile_changed = int(r.group(1))
                        self.reconcile_s = float(r.group(2))
                        self.start_to_reconciled_s = when - self._t0
                        series = samples.get(self._leader() or -1, [])
                        start = took if took is not None else when - self.reconcile_s
                        self.reconcile_cpu_s = _at(series, when) - _at(series, start) if series else float("nan")
                        return
                time.sleep(0.05)
        raise RuntimeError(f"no reconciliation on taking the lease within {limit:.0f} s; see {self._log_path}")

    def _leader(self) -> int | None:
        """The pid in the name of the connection that holds the monitor's advisory lock."""
        with self._sessions() as s:
            name = s.execute(text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objid = :key"), {"key": db.LOCKS["monitor"]}
            ).scalar()
        m = HOLDER_PID.match(name or "")
        return int(m.group(1)) if m else None

    def _children(self) -> list[psutil.Process]:
        """The workers, and the monitor's own process when it has one."""
        try:
            return list(self.ps.children(recursive=True))
        except psutil.Error:
            return []

    def procs(self) -> list[psutil.Process]:
        return [self.ps, *self._children()]

    def workers_of(self, procs: list[psutil.Process]) -> list[psutil.Process]:
        return [p for p in procs if p.pid != self.ps.pid]

    def cpu(self) -> float:
        return tree_cpu(self.procs())

    def monitor_cpu(self) -> float:
        """CPU seconds of the lease holder's process: its monitor's, and whatever requests it serves (a
        worker, with --monitor-in-workers)."""
        leader = self._leader()
        if leader != self.leader:
            log(f"  the lease moved from pid {self.leader} to {leader}")
            self.leader = leader
        if leader is None:
            return float("nan")
        try:
            return float(sum(psutil.Process(leader).cpu_times()[:2]))
        except psutil.Error:
            return float("nan")

    def log_counts(self) -> tuple[dict[str, int], list[str]]:
        counts: collections.Counter[str] = collections.Counter()
        first: list[str] = []
        for line in self._read_log():
            if m := LOG_LINE.match(line):
                level, name, message = m.group(2), m.group(3), m.group(4)
            elif m := GUNICORN_LINE.match(line):
                level, name, message = m.group(1), "gunicorn", m.group(2)
            else:
                continue
            if level in ("WARNING", "ERROR", "CRITICAL"):
                counts[f"{level} {name}"] += 1
                if len(first) < 20:
                    first.append(f"{level} {name}: {message[:300]}")
        return dict(counts), first

    def stop(self) -> None:
        self.sampler.stop()
        if not stop_group(self.proc, 90):
            log("  the engine did not stop within 90 s of SIGTERM; its process group was killed")
        self._log.close()


def _log_time(asctime: str) -> float:
    """The epoch time of a log line's asctime ("2026-01-31 12:00:00,123", local time)."""
    return time.mktime(time.strptime(asctime[:19], "%Y-%m-%d %H:%M:%S")) + int(asctime[20:]) / 1000


def _at(series: list[tuple[float, float]], when: float) -> float:
    """The CPU seconds of a sampled process at time `when` (the sample nearest to it)."""
    return min(series, key=lambda sample: abs(sample[0] - when))[1]


class Sampler:
    """The engine's RSS, threads and open files (summed over its processes) and its largest worker's
    RSS, every half second: the largest seen."""

    def __init__(self, engine: Engine | Server) -> None:
        self.engine = engine
        self.max_rss = 0
        self.max_worker_rss = 0
        self.max_threads = 0
        self.max_fds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.engine.ps.is_running():
                return
            procs = self.engine.procs()
            rss, threads, fds = tree_usage(procs)
            self.max_rss = max(self.max_rss, rss)
            self.max_worker_rss = max(self.max_worker_rss, largest_rss(self.engine.workers_of(procs)))
            self.max_threads = max(self.max_threads, threads)
            self.max_fds = max(self.max_fds, fds)
            self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def tree_cpu(procs: list[psutil.Process]) -> float:
    """CPU seconds (user + system) summed over `procs` (a process gone meanwhile counts 0)."""
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += float(sum(p.cpu_times()[:2]))
    return total


def stop_group(proc: subprocess.Popen[Any], timeout: float) -> bool:
    """SIGTERM to the process group `proc` leads (started with start_new_session), SIGKILL after
    `timeout` seconds; whether it stopped on SIGTERM."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return False


def tree_usage(procs: list[psutil.Process]) -> tuple[int, int, int]:
    """RSS (bytes), threads and open files, summed over `procs` (a process gone meanwhile counts 0)."""
    rss = threads = fds = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            with p.oneshot():
                rss += p.memory_info().rss
                threads += p.num_threads()
                fds += p.num_fds()
    return rss, threads, fds


def largest_rss(procs: list[psutil.Process]) -> int:
    largest = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            largest = max(largest, p.memory_info().rss)
    return largest


def tree_pss(procs: list[psutil.Process]) -> float:
    """Proportional set size summed over `procs` (bytes): pages the workers share with the arbiter since
    the fork count once, which the RSS sum counts in every process."""
    total = 0
    for p in procs:
        try:
            total += p.memory_full_info().pss
        except (psutil.Error, AttributeError):
            return float("nan")
    return float(total)


# ---- the simulated agents --------------------------------------------------------------------------

class Sim:
    def __init__(self, latency: float, usb: int, pci: int, log_path: Path) -> None:
        self._log = open(log_path, "a")
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.sim.agent", "--listen", "127.0.0.1:0",
                                      "--latency", str(latency), "--usb", str(usb), "--pci", str(pci)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     cwd=ROOT, start_new_session=True)
        assert self.proc.stdout is not None
        self.url = json.loads(self.proc.stdout.readline())["url"]
        self.ps = psutil.Process(self.proc.pid)
        self.session = requests.Session()
        self.session.trust_env = False

    def host_url(self, n: int) -> str:
        return f"{self.url}/h/{n}/jsonrpc"

    def control(self, op: str, **body: Any) -> Any:
        r = self.session.post(f"{self.url}/sim/{op}", json=body, timeout=30)
        r.raise_for_status()
        return r.json()

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


# ---- REST ------------------------------------------------------------------------------------------

class Api:
    """One keep-alive session to the engine's REST API per thread."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.token = token
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
            s.trust_env = False
            s.headers["Authorization"] = f"Bearer {self.token}"
        return s

    def post(self, path: str, body: dict[str, Any] | None = None, ok: tuple[int, ...] = (200, 201, 202)) -> Any:
        r = self.session.post(self.base + path, json=body or {}, timeout=300)
        if r.status_code not in ok:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:500]}")
        return r.json()

    def timed(self, method: str, path: str) -> tuple[float, int]:
        t0 = time.perf_counter()
        r = self.session.request(method, self.base + path, json={} if method == "POST" else None, timeout=300)
        _ = r.content
        return time.perf_counter() - t0, r.status_code


class Registrar:
    """The engine's REST app in this process, without its monitor, for registering hosts and VMs
    between two measured runs: the same routes, commands and agent client as the server, on the same
    database, and none of the engine process's own load (its monitor) slowing the setup down."""

    def __init__(self, db_url: str, state_dir: str, token: str) -> None:
        from plugboard.engine_main import build
        cfg = config.load(None, env={"PLUGBOARD_DB_URL": db_url, "PLUGBOARD_STATE_DIR": state_dir})
        self.app, _monitor = build(cfg)
        self.token = token
        self._local = threading.local()

    def post(self, path: str, body: dict[str, Any] | None = None, ok: tuple[int, ...] = (200, 201, 202)) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.app.test_client()
            client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {self.token}"
        r = client.post(path, json=body or {})
        if r.status_code not in ok:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.get_data(as_text=True)[:500]}")
        return r.get_json()

    def close(self) -> None:
        self.app.config["hosts"].close()
        self.app.config["sessions"].kw["bind"].dispose()


@dataclass
class Nic:
    vm_id: str
    nic_id: str
    alias: str
    host: int


def load_nics(sessions: Any) -> list[Nic]:
    """Every NIC of a running VM on a simulated host, plugged and stable."""
    with sessions() as s:
        rows = s.execute(text(
            "SELECT d.vm_id, d.id, d.alias, h.name FROM vm_devices d JOIN vms v ON v.id = d.vm_id "
            "JOIN hosts h ON h.id = v.run_on_host WHERE d.type = 'interface' AND d.is_plugged "
            "AND d.plug_state = 'stable' AND v.status = 'up'")).all()
    return [Nic(vm, dev, alias, int(m.group(1))) for vm, dev, alias, name in rows
            if (m := HOST_NAME.match(name))]


def seed(sim: Sim, sessions: Any) -> tuple[int, int]:
    """Give a new simulation the hosts an earlier run registered (their URLs moved to its port) and the
    VMs the database says run on them, with the devices the rows say are on the wire (for --resume).
    Returns (hosts, VMs)."""
    with sessions.begin() as s:
        hosts = {h_id: int(m.group(1)) for h_id, name in s.execute(text("SELECT id, name FROM hosts"))
                 if (m := HOST_NAME.match(name))}
        for h_id, n in hosts.items():
            s.execute(text("UPDATE hosts SET url = :url WHERE id = :id"), {"url": sim.host_url(n), "id": h_id})
    with sessions() as s:
        vms = s.execute(text("SELECT id, name, machine, run_on_host FROM vms WHERE run_on_host IS NOT NULL "
                             "AND status IN ('up', 'paused', 'unknown', 'powering_up', 'powering_down')")).all()
        nics = collections.defaultdict(list)
        for vm_id, alias, address, mac, network, model in s.execute(text(
                "SELECT d.vm_id, d.alias, d.address, n.mac, n.network, n.model FROM vm_devices d "
                "JOIN vm_nics n ON n.id = d.id WHERE d.is_plugged OR d.plug_state = 'unplugging'")):
            address = json.loads(address) if isinstance(address, str) else address
            nics[vm_id].append({"type": "interface", "device": "bridge", "alias": alias, "macAddr": mac,
                                "network": network, "nicModel": model, "address": address, "linkActive": True})
    seeded = 0
    for vm_id, name, machine, host_id in vms:
        if host_id in hosts:
            sim.control("seed", host=hosts[host_id], vmId=vm_id, name=name, machine=machine,
                        devices=nics.get(vm_id, []))
            seeded += 1
    return len(hosts), seeded


def grow(api: Api | Registrar, sim: Sim, sessions: Any, want: int, vms: int, workers: int) -> float:
    """Register hosts sim0..sim<want-1> that the database lacks and give every one of them `vms`
    running VMs (what an interrupted run left half done is completed), through the REST API."""
    t0 = time.monotonic()
    with sessions() as s:
        known = {int(m.group(1)): h_id for h_id, name in s.execute(text("SELECT id, name FROM hosts"))
                 if (m := HOST_NAME.match(name))}
        running = collections.Counter(h_id for (h_id,) in s.execute(text(
            "SELECT run_on_host FROM vms WHERE run_on_host IS NOT NULL AND status = 'up'")))

    def add_host(n: int) -> tuple[int, str]:
        return n, api.post("/api/hosts", {"name": f"sim{n}", "url": sim.host_url(n)})["id"]

    def add_vm(n: int, host_id: str) -> None:
        vm = api.post("/api/vms", {"name": f"sim{n}-{random.getrandbits(40):010x}", "memory_mb": 256})
        api.post(f"/api/vms/{vm['id']}/nics", {"name": "nic0", "network": NETWORK})
        api.post(f"/api/vms/{vm['id']}/start", {"host_id": host_id})

    missing = [n for n in range(want) if n not in known]
    with cf.ThreadPoolExecutor(workers) as pool:
        # The first host alone: the first registrations create the Default cluster, and concurrent ones
        # race to create it on PostgreSQL (the loser answers 409 "host named ... already exists").
        if missing and not known:
            known.update([add_host(missing.pop(0))])
        known.update(pool.map(add_host, missing))
        log(f"  hosts registered in {time.monotonic() - t0:.1f} s")
        jobs = [(n, h) for n, h in sorted(known.items()) if n < want for _ in range(vms - running[h])]
        list(pool.map(lambda job: add_vm(*job), jobs))
    return time.monotonic() - t0


# ---- measurements ----------------------------------------------------------------------------------

@dataclass
class Step:
    hosts: int
    workers: int = 0                    # the server's worker processes; 0: the single-process engine
    vms: int = 0
    grow_s: float = 0.0
    reconcile_s: float = 0.0
    reconcile_cpu_s: float = 0.0
    reconcile_changed: int = 0
    start_to_reconciled_s: float = 0.0
    start_to_listen_s: float = 0.0
    warmup_s: float | None = None
    steady_cpu_pct: float = 0.0
    steady_monitor_cpu_pct: float = 0.0
    steady_sim_cpu_pct: float = 0.0
    rss_mb: float = 0.0
    rss_max_mb: float = 0.0
    worker_rss_mb: float = 0.0          # the largest worker's (with --workers 0: the engine's)
    worker_rss_max_mb: float = 0.0
    pss_mb: float = float("nan")
    threads: int = 0
    fds: int = 0
    max_threads: int = 0
    max_fds: int = 0
    events: int = 0
    events_lost: int = 0
    event_p50_ms: float = float("nan")
    event_p99_ms: float = float("nan")
    event_max_ms: float = float("nan")
    event_rate: float = 0.0
    event_cpu_ms: float = float("nan")
    event_cpu_pct: float = float("nan")
    rest: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: dict[str, int] = field(default_factory=dict)
    log_first: list[str] = field(default_factory=list)
    load_avg: tuple[float, ...] = ()


def warmup(sim: Sim, hosts: int, limit: float = 300.0) -> float | None:
    """Seconds until every host has a long poll parked (None: not within `limit`)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if sim.control("stats")["pollsWaiting"] >= hosts:
            return time.monotonic() - t0
        time.sleep(0.1)
    return None


def steady(engine: Engine | Server, sim: Sim, seconds: float, step: Step) -> None:
    monitor0, sim0, t0 = engine.monitor_cpu(), float(sum(sim.ps.cpu_times()[:2])), time.monotonic()
    cpu0 = engine.cpu()
    time.sleep(seconds)
    cpu1, elapsed = engine.cpu(), time.monotonic() - t0
    monitor1 = engine.monitor_cpu()
    step.steady_cpu_pct = 100 * (cpu1 - cpu0) / elapsed
    step.steady_monitor_cpu_pct = 100 * (monitor1 - monitor0) / elapsed
    step.steady_sim_cpu_pct = 100 * (float(sum(sim.ps.cpu_times()[:2])) - sim0) / elapsed
    procs = engine.procs()
    rss, step.threads, step.fds = tree_usage(procs)
    step.rss_mb = rss / 2**20
    step.worker_rss_mb = largest_rss(engine.workers_of(procs)) / 2**20
    step.pss_mb = tree_pss(procs) / 2**20


@dataclass
class Events:
    latencies: list[float] = field(default_factory=list)   # seconds, event's journal time -> row seen
    lost: int = 0               # rows that never changed (within DRAIN s of the burst's end)
    emitting: float = 0.0       # seconds spent emitting (first to last event of each burst)
    draining: float = 0.0       # seconds from each burst's first event until its last row changed
    engine_cpu: float = 0.0     # the engine's CPU seconds over the `draining` windows


def event_latency(api: Api, engine: Engine | Server, sim: Sim, sessions: Any, nics: list[Nic], *, rate: float,
                  total: int, workers: int) -> Events:
    """Bursts of device_removed events for NICs left unplugging, at `rate`, until `total` are measured."""
    result = Events()
    latencies = result.latencies
    lost = 0
    query = text("SELECT id FROM vm_devices WHERE id IN :ids AND plug_state <> 'unplugging'").bindparams(
        bindparam("ids", expanding=True))
    outstanding: dict[str, float] = {}     # device id -> its event's journal time
    lock = threading.Lock()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            with lock:
                ids = list(outstanding)
            if ids:
                with sessions() as s:
                    changed = [row[0] for row in s.execute(query, {"ids": ids})]
                seen = time.time()
                with lock:
                    for dev_id in changed:
                        latencies.append(seen - outstanding.pop(dev_id))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    pool = list(nics)
    random.shuffle(pool)
    try:
        while len(latencies) + lost < total:
            batch = pool[: min(len(pool), total - len(latencies) - lost)]
            # The guests will be slow: every unplug answers pending, and the rows stay unplugging.
            sim.control("set", pending_unplug=True)
            try:
                with cf.ThreadPoolExecutor(workers) as ex:
                    list(ex.map(lambda nic: api.post(f"/api/vms/{nic.vm_id}/nics/{nic.nic_id}/deactivate"), batch))
            finally:
                sim.control("set", pending_unplug=False)
            t0, cpu0 = time.monotonic(), engine.cpu()
            for i, nic in enumerate(batch):
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                event = sim.control("finish_unplug", host=nic.host, vmId=nic.vm_id, alias=nic.alias)
                with lock:
                    outstanding[nic.nic_id] = float(event["time"])
            result.emitting += time.monotonic() - t0
            deadline = time.monotonic() + DRAIN
            while time.monotonic() < deadline:
                with lock:
                    if not outstanding:
                        break
                time.sleep(0.01)
            result.draining += time.monotonic() - t0
            result.engine_cpu += engine.cpu() - cpu0
            with lock:
                lost += len(outstanding)
                outstanding.clear()
            # Plug them back for the next cycle and the REST measurements.
            with cf.ThreadPoolExecutor(workers) as ex:
                list(ex.map(lambda nic: api.post(f"/api/vms/{nic.vm_id}/nics/{nic.nic_id}/activate"), batch))
    finally:
        done.set()
        watcher.join()
    result.lost = lost
    return result


def _busy_cpu() -> float:
    """Seconds of CPU the whole machine has spent busy (every process, the kernel's work for them)."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + getattr(times, "irq", 0.0) + getattr(times, "softirq", 0.0)


def _database_cpu() -> dict[int, float]:
    """CPU seconds of each of the PostgreSQL server's processes on this machine, by pid (none with
    SQLite)."""
    found: dict[int, float] = {}
    for p in psutil.process_iter(["name"]):
        if (p.info["name"] or "").startswith("postgres"):
            with contextlib.suppress(psutil.Error):
                found[p.pid] = sum(p.cpu_times()[:2])
    return found


def _database_cpu_since(before: dict[int, float]) -> float:
    """CPU the database's processes used since `before`: a backend that began meanwhile counts whole;
    one that ended meanwhile is not seen (its last seconds are missed, never counted negative)."""
    return sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in _database_cpu().items())


def rest_load(api: Api, engine: Engine | Server | Floor, sim: Sim, clients: int, seconds: float,
              work: Any) -> dict[str, Any]:
    """`clients` threads, each running work(client_index, record) until `seconds` have passed (and at
    least once); record(kind, seconds, status). Returns per kind: count, p50/p99 (ms), errors, rate,
    and for the whole phase the engine's CPU per call (ms) and use (% of a core), this process's (the
    clients') CPU use, and the whole machine's busy CPU per call with its share by the database and the
    simulated agents. The last gives the closed loop's floor: `clients` calls in flight, each needing
    that much of the machine's cores, cannot average less than clients x CPU per call / cores, whatever
    the engine does."""
    samples: dict[str, list[float]] = collections.defaultdict(list)
    errors: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def record(kind: str, elapsed: float, status: int) -> None:
        with lock:
            samples[kind].append(elapsed)
            if status >= 300:
                errors[f"{kind} {status}"] += 1

    def client(i: int) -> None:
        first = True
        while first or time.monotonic() < deadline:
            work(i, record)
            first = False

    me = psutil.Process()

    def sim_cpu() -> float:
        return sum(sim.ps.cpu_times()[:2])
    t0, cpu0, own0, sim0, db0, busy0 = (time.monotonic(), engine.cpu(), sum(me.cpu_times()[:2]), sim_cpu(),
                                        _database_cpu(), _busy_cpu())
    with cf.ThreadPoolExecutor(clients) as ex:
        list(ex.map(client, range(clients)))
    wall, cpu, own = time.monotonic() - t0, engine.cpu() - cpu0, sum(me.cpu_times()[:2]) - own0
    sim_used, db_used, busy = sim_cpu() - sim0, _database_cpu_since(db0), _busy_cpu() - busy0
    calls = sum(len(v) for v in samples.values())
    cores = psutil.cpu_count() or 1
    return {kind: {"count": len(v), "p50_ms": 1000 * pct(v, 50), "p99_ms": 1000 * pct(v, 99),
                   "mean_ms": 1000 * sum(v) / len(v), "max_ms": 1000 * max(v), "per_s": len(v) / wall,
                   "errors": {k: c for k, c in errors.items() if k.startswith(kind + " ")},
                   "engine_cpu_ms_per_call": 1000 * cpu / calls, "engine_cpu_pct": 100 * cpu / wall,
                   "clients_cpu_pct": 100 * own / wall, "clients_cpu_ms_per_call": 1000 * own / calls,
                   "database_cpu_ms_per_call": 1000 * db_used / calls, "sim_cpu_ms_per_call": 1000 * sim_used / calls,
                   "machine_cpu_ms_per_call": 1000 * busy / calls, "machine_busy_pct": 100 * busy / wall / cores,
                   "closed_loop_floor_ms": 1000 * clients * (busy / calls) / cores}
            for kind, v in samples.items()}


def rest(api: Api, engine: Engine | Server, sim: Sim, nics: list[Nic], clients: int,
         seconds: float) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    results.update(rest_load(api, engine, sim, clients, seconds,
                             lambda i, record: record("list VMs", *api.timed("GET", "/api/vms"))))
    results.update(rest_load(api, engine, sim, clients, seconds, lambda i, record: record(
        "list a VM's NICs", *api.timed("GET", f"/api/vms/{random.choice(nics).vm_id}/nics"))))
    mine = [nics[i::clients] for i in range(clients)]
    turn = [0] * clients

    def plug_unplug(i: int, record: Any) -> None:
        if not mine[i]:
            return
        nic = mine[i][turn[i] % len(mine[i])]
        turn[i] += 1
        base = f"/api/vms/{nic.vm_id}/nics/{nic.nic_id}"
        record("unplug (deactivate)", *api.timed("POST", base + "/deactivate"))
        record("plug (activate)", *api.timed("POST", base + "/activate"))

    results.update(rest_load(api, engine, sim, clients, seconds, plug_unplug))
    return results


class Floor:
    """The least a REST write costs, under the same load: engine_overhead's bare Flask app (one
    one-row UPDATE per request, in its own transaction, on the engine's database) served by gunicorn
    with the engine's workers and threads. With the engine measured next to it, it says how much of a
    latency is this machine's and how much the engine's."""

    KIND = "floor: bare Flask + one UPDATE"

    def __init__(self, db_url: str, workers: int, rows: int, log_path: Path) -> None:
        sys.path.insert(0, str(ROOT / "bench"))
        import engine_overhead

        engine_overhead.prepare_floor(db_url, rows)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log_path, "a")
        threads = os.environ.get("PLUGBOARD_THREADS") or "8"
        cmd = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--threads", threads,
               "--worker-class", "gthread", "--bind", f"127.0.0.1:{self.port}", "--keep-alive", "5",
               "--pythonpath", str(ROOT / "bench"), "engine_overhead:floor_from_env()"]
        if gunicorn_app.own_sockets(config.load(None, env={**os.environ, "PLUGBOARD_DB_URL": db_url,
                                                           "PLUGBOARD_WORKERS": str(workers)})):
            cmd.append("--reuse-port")      # served as the engine is: a listening socket per worker
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, cwd=ROOT,
                                     start_new_session=True, env=dict(os.environ, PB_FLOOR_DB_URL=db_url))
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.post(f"{self.url}/nics/1/deactivate", json={}, timeout=5).status_code == 200:
                    return
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"the floor app never answered; see {log_path}")
            time.sleep(0.2)

    def cpu(self) -> float:
        with contextlib.suppress(psutil.Error):
            return tree_cpu([self.ps, *self.ps.children(recursive=True)])
        return tree_cpu([self.ps])

    def stop(self) -> None:
        stop_group(self.proc, 30)
        self._log.close()


def rest_floor(db_url: str, workers: int, sim: Sim, clients: int, seconds: float,
               log_path: Path) -> dict[str, dict[str, Any]]:
    """The floor app under the plug phase's load: each client deactivates and activates its own row."""
    floor = Floor(db_url, workers, clients, log_path)
    try:
        api = Api(floor.url, "")

        def flip(i: int, record: Any) -> None:
            for action in ("deactivate", "activate"):
                record(Floor.KIND, *api.timed("POST", f"/nics/{i + 1}/{action}"))
        return rest_load(api, floor, sim, clients, seconds, flip)
    finally:
        floor.stop()


# ---- the table -------------------------------------------------------------------------------------

def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if value != value else f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(steps: list[Step], base_rss: float | None, note: str = "") -> str:
    rows: list[tuple[str, list[str], str]] = []
    served = any(s.workers for s in steps)

    def row(label: str, values: list[str], target: str = "") -> None:
        rows.append((label, values, target))

    row("hosts / running VMs", [f"{s.hosts:,} / {s.vms:,}" for s in steps])
    row("registration of the new hosts (s)", [_fmt(s.grow_s, 1) for s in steps], "(setup, not a measure)")
    if served:
        row("reconciliation on taking the lease (s)", [_fmt(s.reconcile_s, 1) for s in steps],
            TARGETS["reconcile_s"][0] + " (see the note)")
        row("  the lease holder's CPU during it (s)", [_fmt(s.reconcile_cpu_s, 1) for s in steps])
    else:
        row("startup reconciliation (s)", [_fmt(s.reconcile_s, 1) for s in steps], TARGETS["reconcile_s"][0])
        row("  engine CPU during it (s)", [_fmt(s.reconcile_cpu_s, 1) for s in steps])
    row("  rows changed", [_fmt(s.reconcile_changed) for s in steps])
    row("process start to the reconciliation's end (s)", [_fmt(s.start_to_reconciled_s, 1) for s in steps])
    row("process start to listening (s)", [_fmt(s.start_to_listen_s, 1) for s in steps],
        "first answer on /healthz" if served else "")
    row("monitor warm-up: all polls parked (s)", [_fmt(s.warmup_s, 1) for s in steps])
    every = ", all processes" if served else ""
    row(f"steady CPU, engine{every} (% of a core)", [_fmt(s.steady_cpu_pct, 1) for s in steps])
    row("  of which the lease holder (monitor)" if served else "  of which monitor threads",
        [_fmt(s.steady_monitor_cpu_pct, 1) for s in steps])
    row("  simulated agents (own process)", [_fmt(s.steady_sim_cpu_pct, 1) for s in steps])
    row(f"engine RSS{every}, steady (MB)", [_fmt(s.rss_mb) for s in steps],
        TARGETS["rss_mb"][0] + (f"; {base_rss:.0f} MB with no host" if base_rss else ""))
    if served:
        row("  largest worker, steady (MB)", [_fmt(s.worker_rss_mb) for s in steps])
        row("  PSS, all processes (MB)", [_fmt(s.pss_mb) for s in steps], "pages shared since the fork once")
    row(f"engine RSS{every}, largest seen (MB)", [_fmt(s.rss_max_mb) for s in steps], TARGETS["rss_mb"][0])
    if served:
        row("  largest worker, largest seen (MB)", [_fmt(s.worker_rss_max_mb) for s in steps])
    row(f"engine threads{every} steady / largest", [f"{s.threads:,} / {s.max_threads:,}" for s in steps])
    row(f"engine open files{every} steady / largest", [f"{s.fds:,} / {s.max_fds:,}" for s in steps])
    row("event-to-row p50 (ms)", [_fmt(s.event_p50_ms, 1) for s in steps])
    row("event-to-row p99 (ms)", [_fmt(s.event_p99_ms, 1) for s in steps], TARGETS["event_p99_ms"][0])
    row("  max (ms) / events / lost", [f"{_fmt(s.event_max_ms)} / {s.events:,} / {s.events_lost}" for s in steps])
    row("  events/s emitted", [_fmt(s.event_rate, 1) for s in steps])
    row("  engine CPU per event (ms) / use (%)", [f"{_fmt(s.event_cpu_ms, 1)} / {_fmt(s.event_cpu_pct)}"
                                                 for s in steps])
    kinds = list(dict.fromkeys(k for s in steps for k in s.rest))
    for kind in kinds:
        target = TARGETS["plug_p99_ms"][0] if kind.startswith("plug") else ""
        row(f"REST {kind} p50 / p99 (ms)", [
            f"{_fmt(s.rest[kind]['p50_ms'], 1)} / {_fmt(s.rest[kind]['p99_ms'], 1)}" if kind in s.rest else "-"
            for s in steps], target)
        row("  requests/s, errors", [
            f"{s.rest[kind]['per_s']:.0f}, {sum(s.rest[kind]['errors'].values())}" if kind in s.rest else "-"
            for s in steps])
        row("  engine CPU/call (ms) / use (%)", [
            f"{s.rest[kind]['engine_cpu_ms_per_call']:.1f} / {s.rest[kind]['engine_cpu_pct']:.0f}"
            if kind in s.rest else "-" for s in steps])
        row("  machine CPU/call (ms): db / agents / clients", [
            f"{r['machine_cpu_ms_per_call']:.1f}: {r['database_cpu_ms_per_call']:.1f} / "
            f"{r['sim_cpu_ms_per_call']:.1f} / {r['clients_cpu_ms_per_call']:.1f}"
            if (r := s.rest.get(kind)) else "-" for s in steps], "every process, each call of the phase")
        row("  mean (ms) / closed-loop floor (ms)", [
            f"{r['mean_ms']:.0f} / {r['closed_loop_floor_ms']:.0f}" if (r := s.rest.get(kind)) else "-"
            for s in steps], "floor = clients x machine CPU/call / cores")
    row("engine log warnings+errors", [_fmt(sum(s.log.values())) for s in steps])
    row("load average (1 min) at the end", [_fmt(s.load_avg[0], 1) if s.load_avg else "-" for s in steps])
    width = max(len(r[0]) for r in rows)
    cols = [max(14, *(len(r[1][i]) for r in rows)) for i in range(len(steps))]
    head = " | ".join([" " * width] + [f"{s.hosts:,} hosts".rjust(c) for s, c in zip(steps, cols)] + ["target"])
    lines = [head, "-" * len(head)]
    for label, values, target in rows:
        lines.append(" | ".join([label.ljust(width)] + [v.rjust(c) for v, c in zip(values, cols)] + [target]))
    if note:
        lines.append(note)
    return "\n".join(lines)


def engine_note(workers: int, sqlite: bool, monitor_in_workers: bool = False) -> str:
    return textwrap.fill(_engine_note(workers, sqlite, monitor_in_workers), 110)


def _engine_note(workers: int, sqlite: bool, monitor_in_workers: bool) -> str:
    if not workers:
        return ("Note: the single-process engine (--workers 0): the reconciliation is the startup one "
                "(startup=True), before it listens.")
    threads = os.environ.get("PLUGBOARD_THREADS") or "8"
    return (f"Note: `plugboard engine serve --workers {workers}` (gunicorn, {threads} threads a worker). The "
            "reconciliation is the one the lease's holder runs on taking it, "
            + ("with startup=True (an SQLite engine is one process)." if sqlite else
               "with startup=False on PostgreSQL: other workers may serve already, so rows in flight for "
               "less than the grace are left to their commands, where the single-process engine's startup "
               "reconciliation (startup=True) finished them all.")
            + (" Every worker stands for the monitor's lease (--monitor-in-workers); the holder serves requests "
               "too, and the monitor's CPU is that worker's, its request threads included."
               if monitor_in_workers or sqlite else
               " The monitor runs in a process of its own beside the workers (monitor.own_process), whose "
               "CPU is the monitor's.")
            + " CPU, RSS, threads and open files are summed over the arbiter and its children.")


# ---- the run ---------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--engine-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--state-dir", help=argparse.SUPPRESS)
    parser.add_argument("--listen", help=argparse.SUPPRESS)
    parser.add_argument("--nofile", type=int, help="the engine's open-file limit (RLIMIT_NOFILE), to try a small one")
    parser.add_argument("--steps", default="10,100,1000", help="host counts, growing")
    parser.add_argument("--vms", type=int, default=10, help="running VMs per host")
    parser.add_argument("--db-url", help="the database (wiped); else $PLUGBOARD_TEST_DB_URL, else SQLite")
    parser.add_argument("--resume", action="store_true",
                        help="keep the database's hosts and VMs (of an earlier run on --db-url) and give the "
                             "simulation their VMs, instead of wiping it")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the agents add to every verb")
    parser.add_argument("--usb", type=int, default=2, help="USB devices per simulated host")
    parser.add_argument("--pci", type=int, default=6, help="PCI functions per simulated host")
    parser.add_argument("--steady", type=float, default=65.0, help="seconds of the steady-state window")
    parser.add_argument("--event-rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--event-seconds", type=float, default=20.0, help="seconds' worth of events per step")
    parser.add_argument("--clients", type=int, default=50, help="concurrent REST clients")
    parser.add_argument("--rest-seconds", type=float, default=15.0, help="seconds per REST measurement")
    parser.add_argument("--workers", type=int,
                        help="run `plugboard engine serve --workers N` (default on PostgreSQL: 2); 0 runs the "
                             "single-process engine of this file's --engine-child instead (the default on SQLite)")
    parser.add_argument("--monitor-in-workers", action="store_true",
                        help="with workers on PostgreSQL: the workers stand for the monitor's lease, no monitor "
                             "process of its own (monitor.own_process = false)")
    parser.add_argument("--setup-workers", type=int, default=16,
                        help="concurrent REST calls while registering, and while leaving NICs unplugging")
    parser.add_argument("--lock", help="flock this file from the step of --lock-from hosts on")
    parser.add_argument("--lock-from", type=int, default=1000)
    parser.add_argument("--out", help="write every figure as JSON here")
    args = parser.parse_args()
    if args.engine_child:
        return engine_child(args)

    steps_wanted = [int(x) for x in args.steps.split(",")]
    work = Path(tempfile.mkdtemp(prefix="plugboard-scale-"))
    db_url = args.db_url or os.environ.get("PLUGBOARD_TEST_DB_URL") or f"sqlite:///{work / 'engine.db'}"
    shown = db.normalize_url(db_url).split("@")[-1]
    sqlite = db.is_sqlite(db_url)
    if args.workers is None:
        args.workers = 0 if sqlite else 2
    note = engine_note(args.workers, sqlite, args.monitor_in_workers)
    log(f"database {shown}{'' if args.resume else ' (wiped)'}; logs in {work}; "
        + (f"`plugboard engine serve --workers {args.workers}`" if args.workers else "the single-process engine"))
    bench_engine = db.make_engine(db_url, pool_size=2) if not db.is_sqlite(db_url) else db.make_engine(db_url)
    if not db.is_sqlite(bench_engine) and not args.resume:
        db.drop_all(bench_engine)
    sessions = db.make_sessions(bench_engine)
    sim = Sim(args.latency, args.usb, args.pci, work / "sim.log")
    log(f"simulated agents at {sim.url}")
    steps: list[Step] = []
    lock_file = None
    have = 0
    base_rss: float | None = None
    engine: Engine | Server | None = None

    def start_engine() -> Engine | Server:
        if args.workers:
            return Server(db_url, str(work / "state"), work / "engine.log", args.workers, sessions, args.nofile,
                          monitor_in_workers=args.monitor_in_workers)
        return Engine(db_url, str(work / "state"), work / "engine.log", args.nofile)

    if args.resume:
        have, seeded = seed(sim, sessions)
        log(f"resuming with {have} hosts of the database; {seeded} running VMs given to the simulation")
    else:
        # An engine on the empty database: its tables, and its RSS with no host.
        engine = start_engine()
        base_rss = tree_usage(engine.procs())[0] / 2**20
        engine.stop()
        engine = None
    from tests.unit.engine.tokens import issue_token
    token = issue_token(sessions)
    try:
        for want in steps_wanted:
            if args.lock and want >= args.lock_from and lock_file is None:
                lock_file = open(args.lock, "a")
                log(f"waiting for {args.lock}")
                fcntl.flock(lock_file, fcntl.LOCK_EX)
            step = Step(hosts=max(want, have))
            if want > have or args.resume:
                log(f"registering hosts up to sim{want - 1}, {args.vms} running VMs each")
                registrar = Registrar(db_url, str(work / "state"), token)
                try:
                    step.grow_s = grow(registrar, sim, sessions, want, args.vms, args.setup_workers)
                finally:
                    registrar.close()
                have = max(have, want)
            log(f"  done in {step.grow_s:.1f} s; starting the engine")
            t0 = time.monotonic()
            engine = start_engine()
            api = Api(engine.url, token)
            measure(engine, sim, api, sessions, step, args, db_url, work)
            sampler = engine.sampler
            step.rss_max_mb, step.worker_rss_max_mb = sampler.max_rss / 2**20, sampler.max_worker_rss / 2**20
            step.max_threads, step.max_fds = sampler.max_threads, sampler.max_fds
            step.log, step.log_first = engine.log_counts()
            step.load_avg = os.getloadavg()
            engine.stop()
            engine = None
            log(f"  step of {step.hosts} hosts measured in {time.monotonic() - t0:.0f} s")
            steps.append(step)
            print(table(steps, base_rss, note), flush=True)
            if args.out:
                Path(args.out).write_text(json.dumps({"args": vars(args), "base_rss_mb": base_rss,
                                                      "steps": [s.__dict__ for s in steps]}, indent=1))
    finally:
        if engine is not None:
            engine.stop()
        sim.stop()
        if lock_file is not None:
            lock_file.close()
    print(f"\n{os.cpu_count()} CPUs; database {shown}; agents' latency "
          f"{args.latency:g} s; {args.usb} USB + {args.pci} PCI devices per host; logs in {work}")
    print(table(steps, base_rss, note))
    return 0


def measure(engine: Engine | Server, sim: Sim, api: Api, sessions: Any, step: Step, args: argparse.Namespace,
            db_url: str, work: Path) -> None:
    step.workers = engine.workers
    step.reconcile_s, step.reconcile_cpu_s = engine.reconcile_s, engine.reconcile_cpu_s
    step.reconcile_changed = engine.reconcile_changed
    step.start_to_reconciled_s, step.start_to_listen_s = engine.start_to_reconciled_s, engine.start_to_listen_s
    log(f"  reconciliation {step.reconcile_s:.1f} s ({step.reconcile_changed} changed), "
        f"{step.start_to_reconciled_s:.1f} s after start; listening after {step.start_to_listen_s:.1f} s; "
        "waiting for the polls")
    step.warmup_s = warmup(sim, step.hosts)
    nics = load_nics(sessions)
    step.vms = len(nics)
    log(f"  warm-up {_fmt(step.warmup_s, 1)} s; steady state for {args.steady:g} s")
    steady(engine, sim, args.steady, step)
    total = int(args.event_rate * args.event_seconds)
    log(f"  event-to-row: {total} events at {args.event_rate:g}/s")
    t0 = time.monotonic()
    events = event_latency(api, engine, sim, sessions, nics, rate=args.event_rate, total=total,
                           workers=args.setup_workers)
    latencies = events.latencies
    step.events, step.events_lost = len(latencies), events.lost
    step.event_p50_ms, step.event_p99_ms = 1000 * pct(latencies, 50), 1000 * pct(latencies, 99)
    step.event_max_ms = 1000 * max(latencies) if latencies else float("nan")
    step.event_rate = (len(latencies) + events.lost) / events.emitting if events.emitting else float("nan")
    step.event_cpu_ms = 1000 * events.engine_cpu / max(1, len(latencies))
    step.event_cpu_pct = 100 * events.engine_cpu / events.draining if events.draining else float("nan")
    log(f"  event-to-row p50 {step.event_p50_ms:.1f} ms p99 {step.event_p99_ms:.1f} ms "
        f"({time.monotonic() - t0:.0f} s); REST with {args.clients} clients")
    step.rest = rest(api, engine, sim, load_nics(sessions), args.clients, args.rest_seconds)
    step.rest.update(rest_floor(db_url, max(1, args.workers), sim, args.clients, args.rest_seconds,
                                work / "floor.log"))
    for kind, r in step.rest.items():
        log(f"  {kind}: p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms, {r['count']} calls, errors {r['errors']}")


if __name__ == "__main__":
    raise SystemExit(main())
