"""Inventory sync of one host with 2,000 USB devices: the full sync (every device new: what registration
and reconciliation store, engine.devices.inventory.store -> engine.dao.host_devices.sync, committed) and
the event-driven change of one device (a hostdev_added, then a hostdev_removed, naming it: the agent's
answer for that name, then the engine's store of it, host_devices.sync_named, committed). Medians of
several rounds, next to the targets, on each database side by side in one run.

The agent's answer is the real verb (vdsm_plugin.verbs.host.hostdev_list_by_caps, the whitelist
applied) over an in-memory stand-in for libvirt holding the 2,000 node-device XML documents; libvirt
itself and the HTTP round trip are not measured. For comparison the table also shows the same change
through the whole list (the agent's full answer parsed, then the full sync), as the engine did it
before a device event named its device, and the agent's full answer alone.

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
from typing import Any

from sqlalchemy import delete

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from engine.dao import db  # noqa: E402
from engine.dao.models import Cluster, Host, HostDevice  # noqa: E402
from engine.devices import inventory  # noqa: E402
from vdsm_plugin.verbs import host as host_verbs  # noqa: E402
from vdsm_plugin.whitelist import Whitelist  # noqa: E402

FULL_TARGET_MS = 200.0
CHANGE_TARGET_MS = 20.0
CAPS = ["usb_device"]


def usb(i: int) -> dict[str, Any]:
    """A device as the agent reports it: hubs of 8 ports, 4 levels deep, a serial on half of them."""
    port = f"{1 + i // 512}-{1 + i // 64 % 8}.{1 + i // 8 % 8}.{1 + i % 8}"
    return {"name": f"usb_{1 + i // 128}_{2 + i % 126}", "capability": "usb_device", "vendorId": "0781",
            "productId": f"{5500 + i % 50:04x}", "vendorName": "SanDisk Corp.", "productName": "Cruzer Blade",
            "bus": 1 + i // 128, "device": 2 + i % 126, "portPath": port, "serial": f"S{i:06d}" if i % 2 else None,
            "driver": "usb", "parent": f"usb_{1 + i // 128}", "allowed": True}


def nodedev_xml(dev: dict[str, Any]) -> str:
    """The libvirt node-device document the agent would parse into `dev`."""
    serial = f"<serial>{dev['serial']}</serial>" if dev["serial"] else ""
    return (f"<device><name>{dev['name']}</name><path>/sys/devices/pci0000:00/0000:00:14.0/usb{dev['bus']}/"
            f"{dev['portPath']}</path><parent>{dev['parent']}</parent><driver><name>usb</name></driver>"
            f"<capability type='usb_device'><bus>{dev['bus']}</bus><device>{dev['device']}</device>"
            f"<product id='0x{dev['productId']}'>{dev['productName']}</product>"
            f"<vendor id='0x{dev['vendorId']}'>{dev['vendorName']}</vendor>{serial}</capability></device>")


class MemoryNodeDevices:
    """What the agent's verb asks of vdsm_plugin.virt.Hypervisor, from memory: node devices by name
    (a lookup by name is a dict read) and no domains."""

    def __init__(self, devices: list[dict[str, Any]]) -> None:
        self.xmls = {d["name"]: nodedev_xml(d) for d in devices}

    def nodedev_xmls(self, caps: list[str], names: list[str] | None = None) -> list[str]:
        if names is None:
            return list(self.xmls.values())
        return [self.xmls[n] for n in names if n in self.xmls]

    def domains(self) -> list[Any]:
        return []


class MemoryAgent:
    def __init__(self, devices: list[dict[str, Any]]) -> None:
        self.hv = MemoryNodeDevices(devices)
        self.whitelist = Whitelist()

    def answer(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        return list(host_verbs.hostdev_list_by_caps(self, CAPS, names)["devices"])  # type: ignore[arg-type]


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
    extra = usb(n)
    before, after = MemoryAgent(devices), MemoryAgent(devices + [extra])

    def store(items: list[dict[str, Any]], names: list[str] | None = None) -> None:
        with sessions.begin() as s:
            change = inventory.store(s, host, items, CAPS, why=" (bench)", names=names)
            assert change, "the sync changed nothing"

    def event(agent: MemoryAgent) -> None:
        """A device event naming `extra`: the agent's answer for that name, then the engine's store."""
        store(agent.answer([extra["name"]]), [extra["name"]])

    figures: dict[str, list[float]] = {k: [] for k in ("full", "added", "removed", "whole_added", "whole_removed",
                                                       "agent_full")}
    for _ in range(rounds):
        with sessions.begin() as s:
            s.execute(delete(HostDevice).where(HostDevice.host_id == host.id))
        figures["full"].append(timed(lambda: store(devices)))
        figures["added"].append(timed(lambda: event(after)))          # one device plugged
        figures["removed"].append(timed(lambda: event(before)))       # and pulled again
        figures["whole_added"].append(timed(lambda: store(after.answer())))
        figures["whole_removed"].append(timed(lambda: store(before.answer())))
        figures["agent_full"].append(timed(before.answer))
    engine.dispose()
    return {k: statistics.median(v) for k, v in figures.items()}


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
    print(f"{'':<12}{'full sync':^23}   {'one-device change, event-driven':^39}   {'for comparison':^30}")
    print(f"{'database':<12}{'full':>8}{'target':>8}{'ratio':>7}   {'+1 dev':>8}{'-1 dev':>8}{'target':>8}"
          f"{'ratio':>7}{'vs full':>8}   {'whole +1':>10}{'whole -1':>10}{'agent':>10}")
    for name, r in results.items():
        change = max(r["added"], r["removed"])
        print(f"{name:<12}{r['full']:>8.1f}{FULL_TARGET_MS:>8.0f}{r['full'] / FULL_TARGET_MS:>7.2f}   "
              f"{r['added']:>8.1f}{r['removed']:>8.1f}{CHANGE_TARGET_MS:>8.0f}{change / CHANGE_TARGET_MS:>7.2f}"
              f"{change / r['full']:>8.3f}   {r['whole_added']:>10.1f}{r['whole_removed']:>10.1f}"
              f"{r['agent_full']:>10.1f}")
    print("ratio = measured / target (<= 1 meets it); a one-device change is the worse of +1 and -1, each the\n"
          "agent's answer for the device's name plus the engine's store. For comparison: the same change\n"
          "through the whole list (the agent's full answer, then the full sync), and the agent's full answer alone.")


if __name__ == "__main__":
    main()
