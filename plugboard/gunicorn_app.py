"""The engine under gunicorn: the arbiter forks `workers` processes of gthread workers; each one builds
its own engine parts after the fork (no database connection, thread or socket crosses a fork).

The monitor stands for the deployment's lease, so that one process of the deployment watches the hosts
and another takes over when it dies. By default (PostgreSQL) it runs in a process of its own, forked
and kept alive by the arbiter beside the workers: in a worker, its event work and that worker's
requests shared one interpreter lock, and the clients that worker served waited 3-5 times as long as
the others (plug p50 500-700 ms against 95-150 ms, bench/scale.py at 1,000 hosts). On SQLite the
engine is one process and its worker stands for the lease."""
from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import threading
import time
from typing import Any, Literal

from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from plugboard.forked import run_forked

log = logging.getLogger("plugboard.engine")


def own_sockets(cfg: Any) -> bool:
    """Whether each worker listens on a socket of its own (SO_REUSEPORT; gunicorn's reuse_port).

    With one socket shared by every worker, whichever worker wakes first accepts a whole burst of
    connections, and a keep-alive connection stays with the worker that accepted it: 50 clients
    ended up 37 on one worker and 13 on the other, and the busy worker's requests waited about three
    times as long (plug p99 385 ms against 262 ms with a socket each, bench/scale.py at 10 hosts).
    With a socket each, the kernel spreads new connections over the workers by a hash of their
    addresses. A worker that stops closes its socket: connections it had not accepted yet are reset
    unless net.ipv4.tcp_migrate_req=1 hands them to another worker (README, Running the engine)."""
    return bool(cfg.reuse_port) and cfg.workers > 1


def check_port_free(host: str, port: int) -> None:
    """Refuse a listening address that something already listens on. With SO_REUSEPORT a second
    server of the same user on the same port would bind without an error and take half of the
    connections; a bind without the flag still fails, so it is tried first."""
    from engine.config import ConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)     # as gunicorn binds it
        try:
            probe.bind((host, port))
        except OSError as e:
            problem = "something else listens there" if e.errno == errno.EADDRINUSE else e.strerror
            raise ConfigError("engine.listen", f"cannot listen on {host}:{port}: {problem}") from None


def queued_connections_migrate() -> bool:
    """net.ipv4.tcp_migrate_req (Linux 5.14): a closing SO_REUSEPORT socket hands the connections
    queued on it to another socket of the group instead of resetting them."""
    try:
        with open("/proc/sys/net/ipv4/tcp_migrate_req") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


MonitorPlace = Literal["process", "workers"] | None
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}
QUICK_STOP = 2.0    # seconds the monitor process has to stop once the workers are gone


class EngineServer(BaseApplication):
    """monitor: "process" (a process of its own beside the workers), "workers" (each worker stands for
    the lease) or None (`plugboard engine monitor` runs elsewhere)."""

    def __init__(self, cfg: Any, *, monitor: MonitorPlace = "process") -> None:
        self.engine_cfg = cfg
        self.monitor = monitor
        self._standby: Any = None
        super().__init__()

    def run(self) -> None:
        try:
            EngineArbiter(self).run()
        except RuntimeError as e:       # as gunicorn's own run: a configuration it refuses
            log.error("%s", e)
            raise SystemExit(1) from None

    def load_config(self) -> None:
        cfg = self.engine_cfg
        settings = {
            "bind": [cfg.listen],
            "workers": cfg.workers,
            "worker_class": "gthread",
            "threads": cfg.threads,
            # A worker that has not told the arbiter it lives for this long is killed and replaced; a
            # request itself is bounded by the host calls' own timeouts.
            "timeout": int(cfg.request_timeout),
            "graceful_timeout": int(cfg.unplug_wait + 15),
            "keepalive": 5,
            "reuse_port": own_sockets(cfg),
            "proc_name": "plugboard-engine",
            "control_socket_disable": True,     # nothing here drives gunicorn through it
            "post_worker_init": self._post_worker_init,
            "worker_exit": self._worker_exit,
            "child_exit": _child_exit,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        """Called in each worker after the fork."""
        from plugboard import engine_main

        app, monitor = engine_main.parts(self.engine_cfg)
        if self.monitor == "workers":
            self._standby = engine_main.standby(monitor, self.engine_cfg)
        engine_main.settle_heap()
        return app

    def _post_worker_init(self, worker: Any) -> None:
        # Before the worker accepts requests: an engine alone on SQLite reconciles first.
        if self._standby is not None:
            self._standby.start()

    def _worker_exit(self, _server: Any, worker: Any) -> None:
        if self._standby is not None:
            self._standby.stop(timeout=self.engine_cfg.poll_timeout + 10)


def _child_exit(_server: Any, worker: Any) -> None:
    """In the arbiter, for a worker that is gone: its live gauges leave /metrics, its counts stay."""
    from engine import metrics
    metrics.process_exited(worker.pid)


class EngineArbiter(Arbiter):
    """gunicorn's arbiter, which also keeps the monitor process alive when the engine has one: it is
    forked after the workers, reaped with them, replaced on SIGHUP and stopped with them."""

    def __init__(self, app: EngineServer) -> None:
        super().__init__(app)
        self.monitor_process = MonitorProcess(app.engine_cfg) if app.monitor == "process" else None

    def manage_workers(self) -> None:
        super().manage_workers()
        if self.monitor_process is not None:
            self.monitor_process.keep_alive(self)

    def reap_workers(self) -> None:
        # Before gunicorn's waitpid(-1), which would reap the monitor as a stranger and lose its status.
        if self.monitor_process is not None:
            self.monitor_process.reap()
        super().reap_workers()

    def reload(self) -> None:
        # First: gunicorn's reload returns once the old workers are gone, and the monitor lets go of
        # the lease meanwhile; its successor is forked once it has.
        if self.monitor_process is not None:
            self.monitor_process.replace()
        super().reload()

    def stop(self, graceful: bool = True) -> None:
        # The monitor lets go of the lease while the workers finish, within their graceful limit, and
        # has QUICK_STOP seconds of its own after them (a quick stop's wait for the workers may use
        # more than that already).
        deadline = time.monotonic() + (self.cfg.graceful_timeout if graceful else 0.0)
        if self.monitor_process is not None:
            self.monitor_process.stopping = True
            self.monitor_process.signal(signal.SIGTERM if graceful else signal.SIGQUIT)
        super().stop(graceful)
        if self.monitor_process is not None:
            self.monitor_process.wait(max(QUICK_STOP, deadline - time.monotonic()))


class MonitorProcess:
    """The deployment's monitor in a child of the arbiter (`engine_main.watch_until`). One that dies is
    forked again at once, or RESPAWN_AFTER seconds after its start if it lived less than that (a
    monitor that cannot start does not spin); the lease keeps it single across replicas."""

    RESPAWN_AFTER = 5.0

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.pid: int | None = None
        self.started = 0.0
        self.stopping = False       # the arbiter stops: no new monitor
        self._replacing = False     # SIGHUP: the next one starts as soon as this one is gone

    def keep_alive(self, arbiter: Arbiter) -> None:
        if self.pid is not None or self.stopping:
            return
        if not self._replacing and time.monotonic() < self.started + self.RESPAWN_AFTER:
            return
        self._replacing = False
        self.started = time.monotonic()
        # Blocked across the fork: a stop sent before the child has its own handlers waits for them,
        # instead of reaching the arbiter's, which would only queue it in the child's copy.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            self.pid = run_forked(lambda: _watch(arbiter, self.cfg))
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        log.info("monitor process %d started", self.pid)

    def signal(self, sig: int) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def replace(self) -> None:
        self._replacing = True
        self.signal(signal.SIGTERM)

    def reap(self) -> None:
        if self.pid is None:
            return
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:       # reaped by gunicorn's waitpid(-1) in between: its status is lost
            pid, status = self.pid, None
        if not pid:
            return
        how = "ended" if status is None else _exit_status(status)
        quiet = self.stopping or self._replacing
        (log.info if quiet else log.error)("monitor process %d %s%s", pid, how,
                                           "" if quiet else "; another one takes its place")
        self.pid = None
        from engine import metrics
        metrics.process_exited(pid)

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.pid is not None and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.1)
        if self.pid is not None:
            self.signal(signal.SIGKILL)
            while self.pid is not None:
                self.reap()
                time.sleep(0.05)


def _exit_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


def _watch(arbiter: Arbiter, cfg: Any) -> None:
    """In the forked monitor process: shed what belongs to the arbiter (its signal handlers, its
    listening sockets, the workers' heartbeat files), then watch until SIGTERM (SIGQUIT, SIGINT) or
    until the arbiter is gone, as gunicorn's workers do: an orphan would hold the lease unsupervised."""
    from plugboard import engine_main

    # The arbiter's other signals (HUP: it replaces this process itself; USR1, TTIN, ...) are its own:
    # a signal sent to every process of the engine must not end the monitor by their default action.
    for sig in arbiter.SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    stop = engine_main.StopSignals()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)    # blocked since the fork
    for listener in arbiter.LISTENERS:
        listener.close()
    for worker in arbiter.WORKERS.values():
        worker.tmp.close()
    util._setproctitle(f"monitor [{arbiter.proc_name}]")
    threading.Thread(target=_end_with_parent, args=(arbiter.pid, stop), name="monitor-parent", daemon=True).start()
    engine_main.watch_until(cfg, stop)


def _end_with_parent(parent: int, stop: Any, every: float = 1.0) -> None:
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("monitor process %d: the arbiter %d is gone; stopping", os.getpid(), parent)
            stop.set()
            return
        time.sleep(every)
