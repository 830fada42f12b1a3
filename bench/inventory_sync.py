"""Inventory sync of one host with 2,000 USB devices, through the event-driven path
(engine.devices.inventory.store -> engine.dao.host_devices.sync, committed): the initial sync (every
device new) and a one-device change (one device plugged, then pulled: the whole list read again, as
after a hostdev_added / hostdev_removed event). Medians of several rounds, next to the targets,
measured side by side in one run.

    .venv/bin/python bench/inventory_sync.py [--devices 2000] [--rounds 7]

On SQLite (a file in a temporary directory) and, when PLUGBOARD_TEST_DB_URL is set, on that
PostgreSQL database too (its tables are dropped and made anew)."""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import delete

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.dao import db  # noqa: E402
from engine.dao.models import Cluster, Host, HostDevice  # noqa: E402
from engine.devices import inventory  # noqa: E402

FULL_TARGET_MS = 200.0
CHANGE_TARGET_MS = 20.0


def usb(i: int) -> dict[str, object]:
    """A device as the agent reports it: hubs of 8 ports, 4 levels deep, a serial on half of them."""
    port = f"{1 + i // 512}-{1 + i // 64 % 8}.{1 + i // 8 % 8}.{1 + i % 8}"
    return {"name": f"usb_{1 + i // 128}_{2 + i % 126}", "capability": "usb_device", "vendorId": "0781",
            "productId": f"{5500 + i % 50:04x}", "vendorName": "SanDisk Corp.", "productName": "Cruzer Blade",
            "bus": 1 + i // 128, "device": 2 + i % 126, "portPath": port, "serial": f"S{i:06d}" if i % 2 else None,
            "driver": "usb", "parent": f"usb_{1 + i // 128}", "allowed": True}


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def run(url: str, n: int, rounds: int) -> dict[str, float]:
    engine = db.make_engine(url)
    if not db.is_sqlite(engine):
        db.drop_all(engine)
    db.create_all(engine)
    sessions = db.make_sessions(engine)
    with sessions.begin() as s:
        cluster = Cluster(name="bench")
        s.add(cluster)
        s.flush()
        host = Host(name="bench1", cluster_id=cluster.id, url="http://127.0.0.1:1/jsonrpc", capabilities={})
        s.add(host)
    devices = [usb(i) for i in range(n)]
    plugged = devices + [usb(n)]

    def store(items: list[dict[str, object]]) -> None:
        with sessions.begin() as s:
            change = inventory.store(s, host, items, why=" (bench)")
            assert change, "the sync changed nothing"

    full, added, removed = [], [], []
    for _ in range(rounds):
        with sessions.begin() as s:
            s.execute(delete(HostDevice).where(HostDevice.host_id == host.id))
        full.append(timed(lambda: store(devices)))
        added.append(timed(lambda: store(plugged)))      # one device plugged
        removed.append(timed(lambda: store(devices)))    # and pulled again
    engine.dispose()
    return {"full": statistics.median(full), "added": statistics.median(added),
            "removed": statistics.median(removed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    urls = {}
    with tempfile.TemporaryDirectory() as tmp:
        urls["sqlite"] = f"sqlite:///{tmp}/bench.db"
        if os.environ.get("PLUGBOARD_TEST_DB_URL"):
            urls["postgresql"] = os.environ["PLUGBOARD_TEST_DB_URL"]
        results = {name: run(url, args.devices, args.rounds) for name, url in urls.items()}
    print(f"inventory sync, {args.devices} USB devices on one host, median of {args.rounds} rounds (ms, committed)")
    print(f"{'database':<12}{'full':>9}{'target':>8}{'ratio':>7}   {'+1 dev':>8}{'-1 dev':>8}{'target':>8}"
          f"{'ratio':>7}   {'change/full':>11}")
    for name, r in results.items():
        change = max(r["added"], r["removed"])
        print(f"{name:<12}{r['full']:>9.1f}{FULL_TARGET_MS:>8.0f}{r['full'] / FULL_TARGET_MS:>7.2f}   "
              f"{r['added']:>8.1f}{r['removed']:>8.1f}{CHANGE_TARGET_MS:>8.0f}{change / CHANGE_TARGET_MS:>7.2f}   "
              f"{change / r['full']:>11.2f}")
    print("ratio = measured / target (<= 1 meets it); a one-device change is the worse of +1 and -1")


if __name__ == "__main__":
    main()
