"""`plugboard engine serve | engine monitor | agent serve | db upgrade | up | down | pki init`. The engine and the agent
never import each other; this module only wires each one up from its own config, importing it lazily."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path


def _agent_serve(args: argparse.Namespace) -> int:
    from vdsm_plugin import config, server, verbs
    from vdsm_plugin.agent import Agent

    cfg = config.load(args.config, listen=args.listen, libvirt_uri=args.libvirt_uri,
                      state_dir=args.state_dir, hooks_dir=args.hooks_dir,
                      insecure_dev_http=True if args.insecure_dev_http else None)
    try:
        server.transport(cfg)  # refuse a listener anyone but the engine could drive before anything starts
    except server.StartupError as e:
        print(f"plugboard agent: {e}", file=sys.stderr)
        return 2
    agent = Agent.start(cfg)
    srv = server.serve(agent, verbs.METHODS)
    scheme = "https" if cfg.tls else "http"
    logging.getLogger("plugboard").info("agent listening on %s://%s:%d/jsonrpc (libvirt %s)", scheme,
                                        cfg.listen_host, srv.server_address[1], cfg.libvirt_uri)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        agent.journal.stop_polls()      # the engine's long polls answer now: server_close waits for them
        srv.server_close()
        agent.close()
    return 0


def _engine(action: str):
    def run(args: argparse.Namespace) -> int:
        from engine.config import ConfigError
        from plugboard import engine_main
        try:
            return getattr(engine_main, action)(args)
        except ConfigError as e:
            print(f"plugboard engine {action}: {e}", file=sys.stderr)
            return 2
    return run


def _db_upgrade(args: argparse.Namespace) -> int:
    from plugboard import engine_main
    return engine_main.db_upgrade(args)


def _up(args: argparse.Namespace) -> int:
    from plugboard import demo
    return demo.up(args)


def _down(args: argparse.Namespace) -> int:
    from plugboard import demo
    state = args.state_dir if args.state_dir.is_absolute() else demo.ROOT / args.state_dir
    demo.down(state, args.engine_port)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="plugboard", description="Hot- and cold-plug devices of KVM VMs.")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="area", required=True)

    agent = sub.add_parser("agent", help="the host agent").add_subparsers(dest="action", required=True)
    serve = agent.add_parser("serve", help="serve the agent's JSON-RPC verbs")
    serve.add_argument("--config", type=Path, help="agent TOML file")
    serve.add_argument("--listen", help="HOST:PORT (default 127.0.0.1:54321)")
    serve.add_argument("--libvirt-uri", help="default qemu:///system")
    serve.add_argument("--state-dir", help="where the event journal lives")
    serve.add_argument("--hooks-dir", help="hook scripts, one folder per hook point")
    serve.add_argument("--insecure-dev-http", action="store_true",
                       help="plain HTTP without TLS, for development, on a loopback address only")
    serve.set_defaults(func=_agent_serve)

    engine = sub.add_parser("engine", help="the engine").add_subparsers(dest="action", required=True)
    eserve = engine.add_parser("serve", help="serve the REST API, the web UI and the monitor (gunicorn)")
    eserve.add_argument("--config", type=Path, help="engine TOML file")
    eserve.add_argument("--listen", help="HOST:PORT (default 127.0.0.1:8080)")
    eserve.add_argument("--db-url", help="SQLAlchemy URL (default SQLite in the state dir)")
    eserve.add_argument("--workers", type=int, help="server processes (default: 1 on SQLite, the CPUs on PostgreSQL)")
    eserve.add_argument("--no-monitor", action="store_true",
                        help="do not watch the hosts here (run `plugboard engine monitor` elsewhere)")
    eserve.set_defaults(func=_engine("serve"))
    emon = engine.add_parser("monitor", help="watch the hosts only, while this process holds the monitor's lease")
    emon.add_argument("--config", type=Path, help="engine TOML file")
    emon.add_argument("--db-url", help="SQLAlchemy URL (default SQLite in the state dir)")
    emon.set_defaults(func=_engine("monitor"))

    db = sub.add_parser("db", help="the engine's database").add_subparsers(dest="action", required=True)
    up = db.add_parser("upgrade", help="apply migrations up to the newest revision")
    up.add_argument("--config", type=Path)
    up.add_argument("--db-url")
    up.set_defaults(func=_db_upgrade)

    from plugboard import accounts      # its engine imports are lazy, as here
    accounts.add_parsers(sub)

    demo = sub.add_parser("up", help="bring up agent, engine and a demo VM on this machine")
    demo.add_argument("--state-dir", type=Path, default=Path("var/run"), help="logs, pids, databases")
    demo.add_argument("--engine-port", type=int, default=8080)
    demo.add_argument("--agent-port", type=int, default=54321)
    demo.set_defaults(func=_up)

    down = sub.add_parser("down", help="stop the demo VM, the engine and the agent started by `up`")
    down.add_argument("--state-dir", type=Path, default=Path("var/run"))
    down.add_argument("--engine-port", type=int, default=8080)
    down.set_defaults(func=_down)

    from plugboard import pki  # its key-making library is imported only when `pki init` runs
    pki.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from plugboard import logs      # text or JSON lines ($PLUGBOARD_LOG_FORMAT), with request ids
    try:
        logs.setup(verbose=args.verbose)
    except ValueError as e:
        print(f"plugboard: {e}", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
