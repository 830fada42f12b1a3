"""What the engine costs over the least a REST activate can cost: one NIC activate / deactivate through
the whole engine against a zero-latency host, next to a bare Flask app whose route does one one-row SQL
UPDATE, on the same kind of database, behind the same HTTP server, interleaved round by round.

    .venv/bin/python bench/engine_overhead.py [--rounds 300] [--db-url postgresql+psycopg://...]

The engine is the app `plugboard engine serve` builds (plugboard.engine_main.parts: authentication,
validation, the command's two transactions, audit, the view) with the unit tier's in-process FakeHost as
its host: no network, no libvirt. The time spent inside the host call (FakeHost checks each call against
the agent's schema) is measured and taken out, so what is compared is the engine's own work. Both apps
are served by werkzeug's threaded server on loopback, called through one requests.Session.

Default database: a fresh SQLite file each (WAL, as the engine configures it). With --db-url (a
PostgreSQL database the benchmark may empty), both use it: the engine its tables, the floor a table of
its own. Target: the engine's own time at most 2x the floor's, at the median."""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from flask import Flask, jsonify
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, update

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import config  # noqa: E402
from engine.dao import db  # noqa: E402
from plugboard import engine_main  # noqa: E402
from tests.unit.engine.fakehost import FakeHost, FakeHosts  # noqa: E402
from tests.unit.engine.tokens import issue_token  # noqa: E402


class TimedHosts(FakeHosts):
    """FakeHosts whose calls are timed: `spent` adds up the host calls since it was last reset (the
    client sends one request at a time, so that is one request's host time)."""

    spent = 0.0

    def __call__(self, host):
        inner, outer = super().__call__(host), self

        class Timed:
            name = inner.name

            def call(self, verb, params=None, **kw):
                t0 = time.perf_counter()
                try:
                    return inner.call(verb, params, **kw)
                finally:
                    outer.spent += time.perf_counter() - t0
        return Timed()


def serve(app) -> tuple[str, object]:
    server = engine_main.make_http_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


_META = MetaData()
FLOOR_ROWS = Table("bench_floor", _META, Column("id", Integer, primary_key=True), Column("plugged", Integer),
                   Column("state", String(16)))


def prepare_floor(url: str, rows: int = 1) -> None:
    """The floor's table, made again with `rows` rows (ids 1..rows)."""
    engine = db.make_engine(url)
    _META.drop_all(engine)
    _META.create_all(engine)
    with engine.begin() as c:
        c.execute(FLOOR_ROWS.insert(), [{"id": i, "plugged": 0, "state": "stable"} for i in range(1, rows + 1)])
    engine.dispose()


def floor_from_env() -> Flask:
    """The floor app for a server that imports it (bench/scale.py runs it under gunicorn), on the
    database of $PB_FLOOR_DB_URL, whose table prepare_floor made; its heap settled as the engine's
    workers settle theirs."""
    app = floor_app(os.environ["PB_FLOOR_DB_URL"], prepare=False,
                    connections=int(os.environ.get("PLUGBOARD_THREADS") or 8))[0]
    engine_main.settle_heap()
    return app


def floor_app(url: str, *, prepare: bool = True, connections: int | None = None) -> tuple[Flask, int]:
    """A bare Flask app: one route, one one-row UPDATE in its own transaction, a small JSON answer.
    `connections`: its pool's size, as the engine's is sized (one per request thread)."""
    if prepare:
        prepare_floor(url)
    engine = db.make_engine(url, sqlite_begin="immediate", connections=connections)
    rows = FLOOR_ROWS
    app = Flask("floor")

    @app.post("/nics/<int:nic_id>/<action>")
    def act(nic_id: int, action: str):
        with engine.begin() as c:
            n = c.execute(update(rows).where(rows.c.id == nic_id, rows.c.state == "stable")
                          .values(plugged=int(action == "activate"))).rowcount
        return jsonify({"id": nic_id, "plugged": action == "activate", "updated": n})
    return app, 1


def engine_app(url: str, state: Path, hosts: TimedHosts):
    if not db.is_sqlite(url):
        db.drop_all(create_engine(url))
    cfg = config.load(None, env={"PLUGBOARD_STATE_DIR": str(state), "PLUGBOARD_DB_URL": url})
    engine_main.prepare(cfg)
    app, _monitor = engine_main.parts(cfg)
    app.config["hosts"] = hosts
    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--db-url", help="a PostgreSQL database to use (emptied); default SQLite files")
    args = parser.parse_args()
    import logging
    logging.getLogger("werkzeug").setLevel(logging.WARNING)     # no access log line per request

    tmp = Path(tempfile.mkdtemp(prefix="pb-overhead-"))
    engine_url = args.db_url or f"sqlite:///{tmp}/engine.db"
    floor_url = args.db_url or f"sqlite:///{tmp}/floor.db"
    hosts = TimedHosts(FakeHost("host1", bridges=("ovirtmgmt",)))
    app = engine_app(engine_url, tmp / "state", hosts)
    token = issue_token(app.config["sessions"])
    base, _ = serve(app)
    fbase, _ = serve(floor_app(floor_url)[0])

    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"

    def ok(r, status=(200, 201)):
        if r.status_code not in status:
            raise SystemExit(f"{r.request.method} {r.url} -> {r.status_code} {r.text}")
        return r.json()
    ok(http.post(f"{base}/api/hosts", json={"name": "host1", "url": "http://127.0.0.1:1/jsonrpc"}))
    vm = ok(http.post(f"{base}/api/vms", json={"name": "bench", "os_type": "debian_12", "memory_mb": 64,
                                                "vcpus": 1, "machine": "pc"}))
    nic = ok(http.post(f"{base}/api/vms/{vm['id']}/nics", json={"name": "nic1", "network": "ovirtmgmt",
                                                                  "active": False}))
    ok(http.post(f"{base}/api/vms/{vm['id']}/start", json={}))
    nic_url = f"{base}/api/vms/{vm['id']}/nics/{nic['id']}"

    samples: dict[str, list[float]] = {k: [] for k in ("engine", "engine_host", "engine_own", "floor")}
    for i in range(args.rounds + 20):           # the first 20 rounds warm both up and are not counted
        action = "activate" if i % 2 == 0 else "deactivate"
        hosts.spent = 0.0
        t0 = time.perf_counter()
        body = ok(http.post(f"{nic_url}/{action}", json={}))
        total = time.perf_counter() - t0
        host = hosts.spent
        if body["plugged"] != (action == "activate") or body["plug_state"] != "stable":
            raise SystemExit(f"{action}: {body}")
        t0 = time.perf_counter()
        ok(http.post(f"{fbase}/nics/1/{action}", json={}))
        floor = time.perf_counter() - t0
        if i >= 20:
            samples["engine"].append(total)
            samples["engine_host"].append(host)
            samples["engine_own"].append(total - host)
            samples["floor"].append(floor)

    def ms(values: list[float], q: float) -> float:
        return 1000 * statistics.quantiles(values, n=100)[int(q) - 1] if q < 100 else 1000 * max(values)

    kind = "PostgreSQL" if args.db_url else "SQLite (WAL)"
    print(f"engine overhead: {args.rounds} rounds of activate/deactivate, {kind}, werkzeug on loopback, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'':34}{'median':>9}{'p90':>9}{'p99':>9}")
    for key, label in (("engine", "engine, whole request"), ("engine_host", "  of which the host call"),
                       ("engine_own", "  engine's own time"), ("floor", "floor: Flask + one UPDATE")):
        v = samples[key]
        print(f"{label:<34}{1000 * statistics.median(v):>8.2f} {ms(v, 90):>8.2f} {ms(v, 99):>8.2f}  ms")
    ratio = statistics.median(samples["engine_own"]) / statistics.median(samples["floor"])
    print(f"ratio engine's own / floor at the median: {ratio:.2f}x (target <= 2x: "
          f"{'met' if ratio <= 2 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
