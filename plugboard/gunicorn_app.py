"""The engine under gunicorn: the arbiter forks `workers` processes of gthread workers; each one builds
its own engine parts after the fork (no database connection, thread or socket crosses a fork) and,
unless told not to, stands for the monitor's lease, so that one process of the deployment watches the
hosts and another takes over when it dies."""
from __future__ import annotations

import logging
from typing import Any

from gunicorn.app.base import BaseApplication

log = logging.getLogger("plugboard.engine")


class EngineServer(BaseApplication):
    def __init__(self, cfg: Any, *, monitor: bool = True) -> None:
        self.engine_cfg = cfg
        self.monitor = monitor
        self._standby: Any = None
        super().__init__()

    def load_config(self) -> None:
        cfg = self.engine_cfg
        settings = {
            "bind": [f"{cfg.listen_host}:{cfg.listen_port}"],
            "workers": cfg.workers,
            "worker_class": "gthread",
            "threads": cfg.threads,
            # A worker that has not told the arbiter it lives for this long is killed and replaced; a
            # request itself is bounded by the host calls' own timeouts.
            "timeout": int(cfg.request_timeout),
            "graceful_timeout": int(cfg.unplug_wait + 15),
            "keepalive": 5,
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
