"""REST activate / deactivate of a NIC through the whole engine, next to the bare libvirt attach and
detach-until-DEVICE_REMOVED on the same booted guest, interleaved round by round in one run; then where
the engine's added time goes.

    .venv/bin/python bench/rest_latency.py [--rounds 30] [--settle 0.3] [--uri qemu:///system]

The REST side is what a user hits: the app of `plugboard engine serve` (plugboard.engine_main.build,
with its monitor running) behind werkzeug's threaded server, on an SQLite file in WAL mode (the default
configuration), talking to a real agent process over HTTP (tests/integration/agentproc.py); requests go
through one keep-alive requests.Session. Before every unplug, on both sides, the guest must have
printed the new NIC (PB-NETS) and `--settle` seconds more must have passed; after it, the guest must
have printed its NIC set without it. The libvirt side uses the agent's flags (live + config).

The breakdown is timed inside the engine's process by hooks the benchmark installs from outside (a WSGI
wrapper, a timing proxy around the app's host clients, SQLAlchemy events and the dialect's commit),
counted only on the request's thread, plus floors measured in the same rounds: Host.ping through the
engine's own agent client (the JSON-RPC hop), VM.getDevices through it (the hop plus the XML read and
parse a plug does twice; the agent keeps the domain's handle, so no lookup) and GET of the NIC (an
HTTP round trip into Flask, authentication and a read). It ends with the targets: what the engine adds
to libvirt's attach at the median (< 10 ms) and deactivate / detach (<= 1.10).

Needs libvirtd, the pbbr0 bridge and the guest of scripts/build-guest.sh (make setup)."""
from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import libvirt
import requests
from sqlalchemy import event

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.agentproc import AgentProcess  # noqa: E402
from tests.integration.guest import guest_dir, wait_for_serial  # noqa: E402
from tests.unit.engine.tokens import issue_token  # noqa: E402

DIRECT_MAC = "56:6f:1a:30:02:01"
TARGET_ADDED_MS = 10.0      # what the engine may add to libvirt's attach, at the median
TARGET_RATIO = 1.10         # REST deactivate / libvirt detach-until-removed, at the median


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def ms(values: list[float], p: float | None = None) -> float:
    return (statistics.median(values) if p is None else pct(values, p)) * 1000


def nic_xml(alias: str, mac: str) -> str:
    return (f"<interface type='bridge'><source bridge='pbbr0'/><mac address='{mac}'/>"
            f"<model type='virtio'/><alias name='{alias}'/></interface>")


# ---- timing spans inside the engine's process ------------------------------------------------------

class Spans:
    """Per-request spans, recorded only on a thread that is serving a request the benchmark marked (so
    the monitor's transactions and long-polls are left out)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self.last: dict[str, Any] = {}

    @property
    def rec(self) -> dict[str, Any] | None:
        return getattr(self._local, "rec", None)

    def add(self, name: str, seconds: float) -> None:
        rec = self.rec
        if rec is not None:
            rec[name] = rec.get(name, 0.0) + seconds

    def count(self, name: str) -> None:
        rec = self.rec
        if rec is not None:
            rec[name] = rec.get(name, 0) + 1

    def wsgi(self, app):
        """Wrap a WSGI app: the `app` span runs from the call until the body is produced."""
        def wrapped(environ, start_response):
            self._local.rec = rec = {}
            t0, cpu0 = time.perf_counter(), time.thread_time()
            try:
                body = b"".join(app(environ, start_response))
            finally:
                rec["app"] = time.perf_counter() - t0
                rec["cpu"] = time.thread_time() - cpu0
                self._local.rec = None
                self.last = rec
            return [body]
        return wrapped

    def hosts(self, factory):
        """Wrap a HostClientFactory: each agent call is the `rpc` span."""
        spans = self

        class Timed:
            def __init__(self, client) -> None:
                self.client, self.name = client, client.name

            def call(self, verb, params=None, **kw):
                t0 = time.perf_counter()
                try:
                    return self.client.call(verb, params, **kw)
                finally:
                    spans.add("rpc", time.perf_counter() - t0)

        def timed_factory(host):
            return Timed(factory(host))
        return timed_factory

    def database(self, engine) -> None:
        """Transactions (from the session's connection checkout to the end of COMMIT/ROLLBACK), their
        BEGIN (the engine's own "begin" handler: under BEGIN IMMEDIATE, the wait for the write lock),
        COMMIT (the WAL write and its fsync) and the other statements."""
        local = self._local

        @event.listens_for(engine, "checkout")
        def _checkout(*_a):
            local.tx0 = time.perf_counter()

        def _beginning(_conn):
            # a later transaction on a connection the command kept (db.one_connection) starts here
            if getattr(local, "tx0", None) is None:
                local.tx0 = time.perf_counter()
        event.listen(engine, "begin", _beginning, insert=True)     # before the engine's own handler

        @event.listens_for(engine, "begin")         # runs after the engine's handler that sends BEGIN
        def _begun(_conn):
            self.add("db_begin", time.perf_counter() - local.tx0)

        @event.listens_for(engine, "before_cursor_execute")
        def _before(*_a):
            local.st0 = time.perf_counter()

        @event.listens_for(engine, "after_cursor_execute")
        def _after(_conn, _cursor, statement, *_a):
            if not statement.startswith("BEGIN"):       # already in db_begin
                self.add("db_sql", time.perf_counter() - local.st0)
                self.count("statements")

        dialect = engine.dialect

        def ending(name: str, real):
            def end(dbapi_conn, *a, **kw):
                t0 = time.perf_counter()
                try:
                    return real(dbapi_conn, *a, **kw)
                finally:
                    t1 = time.perf_counter()
                    self.add(f"db_{name}", t1 - t0)
                    if getattr(local, "tx0", None) is not None:
                        self.add("db_tx", t1 - local.tx0)
                        self.count("commits" if name == "commit" else "rollbacks")
                        local.tx0 = None
            return end

        dialect.do_commit = ending("commit", dialect.do_commit)
        dialect.do_rollback = ending("rollback", dialect.do_rollback)


class NewConnections:
    """Counts the TCP connections urllib3 opens, by port (the engine's and the agent's)."""

    def __init__(self) -> None:
        self.by_port: dict[int, int] = defaultdict(int)

    def install(self) -> "NewConnections":
        import urllib3.util.connection as uc

        real = uc.create_connection

        def counted(address, *a, **kw):
            self.by_port[int(address[1])] += 1
            return real(address, *a, **kw)
        uc.create_connection = counted
        return self


# ---- the two paths ---------------------------------------------------------------------------------

class Guest:
    def __init__(self, serial: Path) -> None:
        self.serial, self.offset = serial, 0

    def wait_nets(self, mac: str, present: bool, timeout: float = 30) -> None:
        pattern = rf"PB-NETS:.*{mac}" if present else rf"PB-NETS:(?!.*{mac})"
        _, self.offset = wait_for_serial(self.serial, pattern, timeout=timeout, after_offset=self.offset)


def rest_round(http: requests.Session, url: str, guest: Guest, mac: str, settle: float,
               spans: Spans) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for action in ("activate", "deactivate"):
        t0 = time.perf_counter()
        r = http.post(f"{url}/{action}", json={})
        out[action] = time.perf_counter() - t0
        out[f"{action}_spans"] = spans.last
        body = r.json()
        if r.status_code != 200 or body["plug_state"] != "stable" or body["plugged"] != (action == "activate"):
            raise SystemExit(f"{action} answered {r.status_code}: {body}")
        guest.wait_nets(mac, present=action == "activate")
        if action == "activate":
            time.sleep(settle)
    return out


def direct_round(dom: libvirt.virDomain, removed: dict[str, threading.Event], guest: Guest,
                 settle: float) -> dict[str, float]:
    alias, flags = "ua-bench-direct", libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG
    xml = nic_xml(alias, DIRECT_MAC)
    t0 = time.perf_counter()
    dom.attachDeviceFlags(xml, flags)
    attach = time.perf_counter() - t0
    guest.wait_nets(DIRECT_MAC, present=True)
    time.sleep(settle)
    removed[alias] = done = threading.Event()
    t0 = time.perf_counter()
    dom.detachDeviceFlags(xml, flags)
    if not done.wait(30):                # the unplug is done when the guest released it
        raise SystemExit("libvirt detach: no DEVICE_REMOVED within 30 s")
    detach = time.perf_counter() - t0
    guest.wait_nets(DIRECT_MAC, present=False)
    return {"attach": attach, "detach": detach}


def floors(http: requests.Session, url: str, ping, read_domain) -> dict[str, float]:
    """The cheapest request each hop can carry, measured between the rounds; and one read of the
    domain through the agent (its XML read and parse, which a plug does before and after attaching)."""
    out = {}
    t0 = time.perf_counter()
    http.get(url).raise_for_status()
    out["get"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ping()
    out["ping"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    read_domain()
    out["domain"] = time.perf_counter() - t0
    return out


# ---- set-up ---------------------------------------------------------------------------------------

def start_engine(state: Path, spans: Spans, agent: AgentProcess):
    from engine import config
    from plugboard.engine_main import build, make_http_server

    assert agent.client_cert is not None and agent.ca is not None
    cfg = config.load(None, env={"PLUGBOARD_STATE_DIR": str(state),
                                 "PLUGBOARD_DB_URL": f"sqlite:///{state / 'engine.db'}",
                                 "PLUGBOARD_TLS_CA": agent.ca, "PLUGBOARD_TLS_CERT": agent.client_cert[0],
                                 "PLUGBOARD_TLS_KEY": agent.client_cert[1]})
    app, monitor = build(cfg)
    spans.database(app.config["sessions"].kw["bind"])
    raw_hosts = app.config["hosts"]
    app.config["hosts"] = spans.hosts(raw_hosts)
    app.wsgi_app = spans.wsgi(app.wsgi_app)
    monitor.reconcile_all(startup=True)
    monitor.start()
    server = make_http_server(app, "127.0.0.1", 0)        # what `plugboard engine serve` runs
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return app, server, monitor, raw_hosts


def api(http: requests.Session, method: str, url: str, status: int = 200, **kw) -> Any:
    r = http.request(method, url, timeout=120, **kw)
    if r.status_code != status:
        raise SystemExit(f"{method} {url} -> {r.status_code}: {r.text}")
    return r.json() if r.content else None


def libvirt_events(uri: str, removed: dict[str, threading.Event]) -> libvirt.virConnect:
    libvirt.registerErrorHandler(lambda *_: None, None)
    libvirt.virEventRegisterDefaultImpl()

    def loop() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()
    threading.Thread(target=loop, daemon=True).start()
    conn = libvirt.open(uri)
    conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
                                lambda _c, _d, alias, _o: removed.get(alias, threading.Event()).set(), None)
    return conn


# ---- report ---------------------------------------------------------------------------------------

DB_PARTS = ("db_begin", "db_sql", "db_commit", "db_rollback")


def span(rounds: list[dict[str, Any]], action: str, key: str) -> list[float]:
    return [r[f"{action}_spans"].get(key, 0.0) for r in rounds]


def breakdown(action: str, rounds: list[dict[str, Any]], direct: list[float], fl: dict[str, list[float]]) -> None:
    total = [r[action] for r in rounds]
    app = span(rounds, action, "app")
    rpc = span(rounds, action, "rpc")
    tx = span(rounds, action, "db_tx")
    parts = [
        ("HTTP in/out (client, werkzeug, TCP)", [t - a for t, a in zip(total, app)]),
        ("  floor: GET of the NIC, whole", fl["get"]),
        ("app (Flask, marshmallow, command)", app),
        ("  CPU time of the request's thread", span(rounds, action, "cpu")),
        ("  JSON-RPC call to the agent", rpc),
        ("    floor: Host.ping, same client", fl["ping"]),
        ("    agent's own (call - ping)", [c - p for c, p in zip(rpc, fl["ping"])]),
        ("    floor: VM.getDevices (XML read, parse)", fl["domain"]),
        ("    call - libvirt (same round)", [c - d for c, d in zip(rpc, direct)]),
        ("  database transactions, BEGIN to end", tx),
        ("    BEGIN (a writer's waits for the lock)", span(rounds, action, "db_begin")),
        ("    other SQL statements", span(rounds, action, "db_sql")),
        ("    COMMIT (WAL write, fsync)", span(rounds, action, "db_commit")),
        ("    ROLLBACK (read-only ends, pool resets)", span(rounds, action, "db_rollback")),
        ("    Python inside them (ORM, command)", [t - sum(r[f"{action}_spans"].get(k, 0.0) for k in DB_PARTS)
                                                   for t, r in zip(tx, rounds)]),
        ("  rest of app (Flask, marshmallow, views)", [a - c - t for a, c, t in zip(app, rpc, tx)]),
        ("added by the engine (REST - libvirt)", [t - d for t, d in zip(total, direct)]),
    ]
    counts = {k: statistics.median(span(rounds, action, k)) for k in ("commits", "rollbacks", "statements")}
    print(f"\n{action}: where the time goes (per request; medians do not add up exactly, means do)")
    print(f"{'':<42}{'median ms':>10}{'mean ms':>10}{'p95 ms':>10}")
    for name, vals in parts:
        print(f"{name:<42}{ms(vals):>10.2f}{statistics.fmean(vals) * 1000:>10.2f}{ms(vals, 95):>10.2f}")
    print(f"per request: {counts['commits']:.0f} committed and {counts['rollbacks']:.0f} read-only transactions, "
          f"{counts['statements']:.0f} SQL statements")


def report(args, rest: list[dict[str, Any]], direct: list[dict[str, float]], fl: dict[str, list[float]],
           journal: str, synchronous: str) -> None:
    act, att = [r["activate"] for r in rest], [d["attach"] for d in direct]
    dea, det = [r["deactivate"] for r in rest], [d["detach"] for d in direct]
    print(f"rounds: {args.rounds}, interleaved (TCG guest, machine pc, virtio NIC on bridge pbbr0, settle "
          f"{args.settle:g} s); engine on SQLite journal_mode={journal} synchronous={synchronous}")
    print(f"{'operation':<34}{'median ms':>11}{'p95 ms':>10}")
    rows = [
        ("REST activate", ms(act), ms(act, 95)),
        ("libvirt attach", ms(att), ms(att, 95)),
        ("activate - attach (engine added)", ms(act) - ms(att), ms(act, 95) - ms(att, 95)),
        ("activate / attach", ms(act) / ms(att), ms(act, 95) / ms(att, 95)),
        ("REST deactivate", ms(dea), ms(dea, 95)),
        ("libvirt detach until removed", ms(det), ms(det, 95)),
        ("deactivate / detach", ms(dea) / ms(det), ms(dea, 95) / ms(det, 95)),
    ]
    for name, med, p95 in rows:
        fmt = ".2f" if "/" in name else ".1f"
        print(f"{name:<34}{med:>11{fmt}}{p95:>10{fmt}}")
    breakdown("activate", rest, att, fl)
    breakdown("deactivate", rest, det, fl)
    added = ms(act) - ms(att)
    print(f"\ntargets: activate adds {added:.1f} ms at the median (target < {TARGET_ADDED_MS:g} ms: "
          f"{'met' if added < TARGET_ADDED_MS else 'not met'}); deactivate / detach {ms(dea) / ms(det):.2f} "
          f"(target <= {TARGET_RATIO:.2f}: {'met' if ms(dea) / ms(det) <= TARGET_RATIO else 'not met'})")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--settle", type=float, default=0.3,
                    help="seconds after the guest saw a new NIC before it is unplugged (both sides)")
    ap.add_argument("--uri", default="qemu:///system")
    ap.add_argument("--keep", action="store_true", help="keep the state directory (logs, database)")
    args = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)     # no line per request on stderr

    tmp = Path(tempfile.mkdtemp(prefix="pb-rest-bench-"))
    spans = Spans()
    removed: dict[str, threading.Event] = {}
    conn = libvirt_events(args.uri, removed)
    agent = AgentProcess(tmp / "agent", args.uri, unplug_timeout=10, tls=True)   # as deployed: mutual TLS
    agent.start()
    server = monitor = None
    http = requests.Session()
    http.trust_env = False
    vm = None
    try:
        app, server, monitor, raw_hosts = start_engine(tmp / "engine", spans, agent)
        base = f"http://127.0.0.1:{server.server_port}/api"
        http.headers["Authorization"] = f"Bearer {issue_token(app.config['sessions'])}"
        g, serial = guest_dir(), tmp / "console.log"
        host = api(http, "POST", f"{base}/hosts", 201, json={"name": "bench", "url": agent.url})
        vm = api(http, "POST", f"{base}/vms", 201, json={
            "name": f"pb-rest-bench-{tmp.name[-6:]}", "os_type": "debian_12", "memory_mb": 256, "vcpus": 1,
            "machine": "pc", "boot": {"kernel": str(g / "vmlinuz"), "initrd": str(g / "initrd.gz"),
                                      "cmdline": "console=ttyS0 quiet panic=-1 rdinit=/init",
                                      "serialLog": str(serial)}})
        nic = api(http, "POST", f"{base}/vms/{vm['id']}/nics", 201,
                  json={"name": "nic1", "network": "pbbr0", "active": False})
        vm = api(http, "POST", f"{base}/vms/{vm['id']}/start", json={"host_id": host["id"]})
        guest = Guest(serial)
        _, guest.offset = wait_for_serial(serial, r"PLUGBOARD-GUEST-READY", timeout=120)
        dom = conn.lookupByUUIDString(vm["id"])
        nic_url = f"{base}/vms/{vm['id']}/nics/{nic['id']}"
        mac = nic["mac"].lower()

        from engine.dao import hosts as hosts_dao
        with app.config["sessions"]() as s:
            client = raw_hosts(hosts_dao.get(s, host["id"]))      # the app's own client for this agent
            pragma = s.connection().exec_driver_sql
            journal = pragma("PRAGMA journal_mode").scalar()
            synchronous = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(pragma("PRAGMA synchronous").scalar())

        conns = NewConnections().install()
        rest_rounds, direct_rounds, fl = [], [], defaultdict(list)
        for i in range(args.rounds):
            # Alternate which path goes first, so that neither always follows the other.
            order = ("rest", "direct") if i % 2 == 0 else ("direct", "rest")
            for path in order:
                if path == "rest":
                    rest_rounds.append(rest_round(http, nic_url, guest, mac, args.settle, spans))
                else:
                    direct_rounds.append(direct_round(dom, removed, guest, args.settle))
            for k, v in floors(http, nic_url, lambda: client.call("Host.ping"),
                               lambda: client.call("VM.getDevices", {"vmId": vm["id"]})).items():
                fl[k].append(v)
        opened = {"engine": conns.by_port[server.server_port], "agent": conns.by_port[agent.port]}
    finally:
        if vm is not None and server is not None:
            try:
                http.post(f"{base}/vms/{vm['id']}/stop", json={}, timeout=60)
            except requests.RequestException:
                pass
        if monitor is not None:
            monitor.stop()
        if server is not None:
            server.shutdown()
        agent.stop()
        conn.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    report(args, rest_rounds, direct_rounds, fl, journal, synchronous)
    print(f"\nnew TCP connections in the rounds: to the engine {opened['engine']} for {3 * args.rounds} requests "
          f"(activate, deactivate, GET); to the agent {opened['agent']} for {3 * args.rounds} calls (plug, unplug, "
          "ping) and the monitor's long-polls")
    if args.keep:
        print(f"\nstate kept in {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
