"""`plugboard engine serve | monitor` and `plugboard db upgrade`: wire the engine's parts from its config."""
from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import select
import signal

log = logging.getLogger("plugboard.engine")


def _config(args: argparse.Namespace):
    from engine import config
    env = dict(os.environ)
    if getattr(args, "db_url", None):
        env["PLUGBOARD_DB_URL"] = args.db_url
    if getattr(args, "listen", None):
        env["PLUGBOARD_LISTEN"] = args.listen
    if getattr(args, "workers", None) is not None:
        env["PLUGBOARD_WORKERS"] = str(args.workers)
    return config.load(args.config, env=env)


def db_upgrade(args: argparse.Namespace) -> int:
    from engine.dao import db
    cfg = _config(args)
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    db.upgrade(cfg.db_url)
    log.info("database at %s is at the newest revision", cfg.db_url)
    return 0


def prepare(cfg) -> None:
    """What a deployment does once before it serves: its state dir, the newest schema, the
    configuration's PCI aliases (and only them) in the database."""
    from engine.dao import db, pci_aliases

    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    db.upgrade(cfg.db_url)
    engine = db.make_engine(cfg.db_url)
    try:
        with db.make_sessions(engine).begin() as s:
            pci_aliases.replace_all(s, cfg.pci_aliases)
    finally:
        engine.dispose()


def parts(cfg):
    """One engine process's own parts: database sessions, host clients, its monitor and the web app."""
    from engine.macpool import MacPool
    from engine.app import create_app

    sessions, hosts, monitor = _watching(cfg)
    # STATE_DIR: the web UI keeps the key that signs its session cookies there.
    app = create_app({"sessions": sessions, "hosts": hosts, "mac_pool": MacPool.from_config(cfg),
                      "pcie_ports": cfg.pcie_ports, "STATE_DIR": cfg.state_dir})
    return app, monitor


def _watching(cfg):
    """Database sessions, host clients and a monitor over them: what a monitor needs, without a web app."""
    from engine.dao import db
    from engine.jsonrpc_client import client_factory
    from engine.monitor import Monitor

    # IMMEDIATE transactions on SQLite: a read-then-compare-and-set loses cleanly (409), never "locked".
    # A live plug holds its connection through the host call (db.one_connection): one per request
    # thread, and the monitor's on top (the pool's overflow).
    sessions = db.make_sessions(db.make_engine(cfg.db_url, sqlite_begin="immediate", connections=cfg.threads))
    hosts = client_factory(cfg)
    return sessions, hosts, Monitor.from_config(sessions, hosts, cfg)


def settle_heap() -> None:
    """Once a process's parts are built: what exists now (modules, the app, mappers, compiled
    statements) lives as long as the process, so the collector stops scanning it. A full collection
    otherwise walks those ~140,000 objects (30-60 ms here, the GIL held: every request of the process
    waits) each time enough of the requests' garbage survives; frozen, it walks what requests made."""
    gc.freeze()


def build(cfg):
    """A whole engine in this process (tests, benchmarks): `prepare`, then `parts`."""
    prepare(cfg)
    return parts(cfg)


def standby(monitor, cfg):
    """The monitor of this process, run only while it holds the deployment's monitor lease. On SQLite
    the engine is one process, so the first reconciliation may settle whatever was left in flight."""
    from engine.dao import db, leases
    from engine.monitor.runner import Standby

    sqlite = db.is_sqlite(cfg.db_url)
    return Standby(monitor, leases.monitor_lease(db.make_engine(cfg.db_url)), startup=sqlite,
                   retry=min(5.0, cfg.reconcile_interval))


def make_http_server(app, host: str, port: int):
    """werkzeug's threaded server in this process (tests and benchmarks), answering without Nagle's
    algorithm: werkzeug writes a response's headers and body in two sends, and with Nagle on the body
    waited for the client's delayed ACK of the headers (about 2 ms per POST here)."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Handler(WSGIRequestHandler):
        disable_nagle_algorithm = True

    return make_server(host, port, app, threaded=True, request_handler=Handler)


def serve(args: argparse.Namespace) -> int:
    """gunicorn's arbiter with `workers` processes of `threads` threads each, every one building its own
    parts after the fork, and the monitor: in a process of its own that the arbiter keeps alive
    (monitor.own_process), or in the workers, each standing for its lease; none with --no-monitor.
    SIGHUP replaces the workers (and the monitor process) gracefully, SIGTERM stops after the
    requests in progress."""
    from plugboard import gunicorn_app

    cfg = _config(args)
    own = gunicorn_app.own_sockets(cfg)
    if own:
        gunicorn_app.check_port_free(cfg.listen_host, cfg.listen_port)
    in_a_child(prepare, cfg)
    _metrics_dir(cfg)
    where: gunicorn_app.MonitorPlace = (None if args.no_monitor else
                                        "process" if cfg.monitor_own_process else "workers")
    log.info("engine on http://%s/api: %d worker(s) x %d threads%s, %s (database %s)", cfg.listen, cfg.workers,
             cfg.threads, ", a listening socket each" if own else "", _MONITOR_PLACES[where], cfg.db_url)
    if own and not gunicorn_app.queued_connections_migrate():
        log.info("net.ipv4.tcp_migrate_req is 0: a worker that stops resets the connections it had not "
                 "accepted yet (set it to 1 for graceful restarts that lose none)")
    gunicorn_app.EngineServer(cfg, monitor=where).run()
    return 0


def in_a_child(step, cfg) -> None:
    """`step(cfg)` in a forked child, for the arbiter: what it imports (alembic, the ORM, the
    driver) stays out of the arbiter, 24 MB of RSS instead of 73, and out of the monitor process
    forked from it. Its ConfigError ends `serve` as it would have; any other failure with its
    traceback and exit code 1."""
    import sys

    from engine.config import ConfigError
    from plugboard.forked import run_forked

    def body() -> int:
        try:
            step(cfg)
        except ConfigError as e:
            print(f"plugboard engine serve: {e}", file=sys.stderr)
            return 2
        return 0

    _pid, status = os.waitpid(run_forked(body), 0)
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(code)


_MONITOR_PLACES = {"process": "the monitor in a process of its own", "workers": "the monitor in the workers",
                   None: "no monitor (--no-monitor)"}


def _metrics_dir(cfg) -> None:
    """The workers' metrics are summed by /metrics from files in one directory (prometheus-client's
    multiprocess mode), emptied at start; it must be named before any worker imports the library.
    An operator's own $PROMETHEUS_MULTIPROC_DIR wins."""
    import shutil

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(cfg.state_dir / "metrics")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path


def monitor(args: argparse.Namespace) -> int:
    """`plugboard engine monitor`: the monitor alone, for deployments that serve with --no-monitor.
    It stands for the same lease as the servers' monitors, so running it twice is safe."""
    cfg = _config(args)
    prepare(cfg)
    watch_until(cfg, StopSignals())
    return 0


class StopSignals:
    """SIGTERM, SIGINT and SIGQUIT as a pipe that a monitor process waits on: the handlers only write a
    byte, where setting a threading.Event from a handler could deadlock on the lock the interrupted
    main thread holds inside Event.wait. `set` does the same from any thread."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, *_: object) -> None:
        with contextlib.suppress(BlockingIOError):      # full: a stop is written already
            os.write(self._write, b".")

    def set(self) -> None:
        self._handle()

    def is_set(self) -> bool:
        return bool(select.select([self._read], [], [], 0)[0])

    def wait(self) -> None:
        select.select([self._read], [], [])


def watch_until(cfg, stop) -> None:
    """A process that only watches the hosts (`plugboard engine monitor`, or the monitor process of
    `serve`): it stands for the deployment's lease until `stop` (StopSignals) is set. Servers may have
    commands in flight, so its first reconciliation leaves young in-flight rows to their commands. A
    stop that came while it was being built ends it before it takes the lease and reconciles."""
    _sessions, _hosts, mon = _watching(cfg)
    runner = standby(mon, cfg)
    runner.startup = False
    settle_heap()
    if stop.is_set():
        return
    runner.start()
    try:
        stop.wait()
    finally:
        runner.stop(timeout=cfg.poll_timeout + 10)
