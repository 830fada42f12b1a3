"""`plugboard engine serve` and `plugboard db upgrade`: wire the engine's parts from its config."""
from __future__ import annotations

import argparse
import logging
import os

log = logging.getLogger("plugboard.engine")


def _config(args: argparse.Namespace):
    from engine import config
    env = dict(os.environ)
    if getattr(args, "db_url", None):
        env["PLUGBOARD_DB_URL"] = args.db_url
    if getattr(args, "listen", None):
        env["PLUGBOARD_LISTEN"] = args.listen
    return config.load(args.config, env=env)


def db_upgrade(args: argparse.Namespace) -> int:
    from engine.dao import db
    cfg = _config(args)
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    db.upgrade(cfg.db_url)
    log.info("database at %s is at the newest revision", cfg.db_url)
    return 0


def build(cfg):
    """The engine's parts: database sessions, host clients, monitor and the REST app."""
    from engine.dao import db, pci_aliases
    from engine.jsonrpc_client import client_factory
    from engine.macpool import MacPool
    from engine.monitor import Monitor
    from engine.app import create_app

    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    db.upgrade(cfg.db_url)
    # IMMEDIATE transactions on SQLite: a read-then-compare-and-set loses cleanly (409), never "locked".
    sessions = db.make_sessions(db.make_engine(cfg.db_url, sqlite_begin="immediate"))
    with sessions.begin() as s:     # the configuration's PCI aliases, and only them
        pci_aliases.replace_all(s, cfg.pci_aliases)
    hosts = client_factory(cfg)
    monitor = Monitor.from_config(sessions, hosts, cfg)
    # STATE_DIR: the web UI keeps the key that signs its session cookies there.
    app = create_app({"sessions": sessions, "hosts": hosts, "mac_pool": MacPool.from_config(cfg),
                      "pcie_ports": cfg.pcie_ports, "STATE_DIR": cfg.state_dir})
    return app, monitor


def make_http_server(app, host: str, port: int):
    """werkzeug's threaded server, answering without Nagle's algorithm: werkzeug writes a response's
    headers and body in two sends, and with Nagle on the body waited for the client's delayed ACK of
    the headers (about 2 ms per POST here)."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Handler(WSGIRequestHandler):
        disable_nagle_algorithm = True

    return make_server(host, port, app, threaded=True, request_handler=Handler)


def serve(args: argparse.Namespace) -> int:
    cfg = _config(args)
    app, monitor = build(cfg)
    monitor.reconcile_all(startup=True)
    monitor.start()
    host, port = cfg.listen_host, cfg.listen_port
    server = make_http_server(app, host, port)
    log.info("engine listening on http://%s:%d/api (database %s)", host, port, cfg.db_url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        monitor.stop(timeout=5)
    return 0
