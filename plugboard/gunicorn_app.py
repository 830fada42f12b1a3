"""The engine under gunicorn: the arbiter forks `workers` processes of gthread workers; each one builds
its own engine parts after the fork (no database connection, thread or socket crosses a fork) and,
unless told not to, stands for the monitor's lease, so that one process of the deployment watches the
hosts and another takes over when it dies."""
from __future__ import annotations

import errno
import logging
import socket
from typing import Any

from gunicorn.app.base import BaseApplication

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


class EngineServer(BaseApplication):
    def __init__(self, cfg: Any, *, monitor: bool = True) -> None:
        self.engine_cfg = cfg
        self.monitor = monitor
        self._standby: Any = None
        super().__init__()

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
        if self.monitor:
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
