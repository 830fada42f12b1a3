"""hotplugNic / hotunplugNic latency through the agent's JSON-RPC server, next to the bare libvirt
calls on the same booted guest in the same run.

    .venv/bin/python bench/agent_latency.py [--rounds 30] [--uri qemu:///system]

Needs libvirtd, the pbbr0 bridge and the guest of scripts/build-guest.sh (make setup)."""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import libvirt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.guest import guest_dir, wait_for_serial  # noqa: E402
from tests.integration.vdsm_plugin.conftest import Rpc  # noqa: E402
from vdsm_plugin import config, server, verbs  # noqa: E402
from vdsm_plugin.agent import Agent  # noqa: E402


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def nic_xml(alias: str, mac: str) -> str:
    return (f"<interface type='bridge'><source bridge='pbbr0'/><mac address='{mac}'/>"
            f"<model type='virtio'/><alias name='{alias}'/></interface>")


def direct_round(dom: libvirt.virDomain, removed: dict[str, threading.Event], i: int) -> tuple[float, float]:
    alias, mac = f"ua-direct{i}", f"56:6f:1a:30:01:{i % 256:02x}"
    flags = libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG
    t0 = time.perf_counter()
    dom.attachDeviceFlags(nic_xml(alias, mac), flags)
    t1 = time.perf_counter()
    removed[alias] = threading.Event()
    dom.detachDeviceFlags(nic_xml(alias, mac), flags)
    removed[alias].wait(30)          # the unplug is done when the guest released it
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--uri", default="qemu:///system")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pb-bench-"))
    # Plain HTTP on loopback, so that the figures are the agent's own work (rest_latency.py measures
    # the deployed path, mutual TLS included).
    cfg = config.load(None, listen="127.0.0.1:0", libvirt_uri=args.uri, state_dir=str(tmp / "state"),
                      insecure_dev_http=True, image_dirs=[str(guest_dir())], log_dir=str(tmp))
    agent = Agent.start(cfg)
    srv = server.serve(agent, verbs.METHODS)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    rpc = Rpc(f"http://127.0.0.1:{srv.server_address[1]}/jsonrpc")

    g = guest_dir()
    vm_id, serial = str(uuid.uuid4()), tmp / "console.log"
    rpc("VM.create", vmId=vm_id, params={
        "name": f"pb-bench-{vm_id[:8]}", "memSize": 256, "vcpus": 1, "machine": "pc",
        "kernel": str(g / "vmlinuz"), "initrd": str(g / "initrd.gz"),
        "cmdline": "console=ttyS0 quiet panic=-1 rdinit=/init", "serialLog": str(serial)})
    try:
        wait_for_serial(serial, r"PLUGBOARD-GUEST-READY", timeout=120)
        plug, unplug = [], []
        for i in range(args.rounds):
            nic = {"type": "interface", "device": "bridge", "network": "pbbr0", "alias": f"ua-bench{i}",
                   "macAddr": f"56:6f:1a:30:00:{i % 256:02x}", "nicModel": "pv"}
            t0 = time.perf_counter()
            rpc("VM.hotplugNic", vmId=vm_id, nic=nic)
            t1 = time.perf_counter()
            res = rpc("VM.hotunplugNic", vmId=vm_id, nic={"alias": nic["alias"]})
            t2 = time.perf_counter()
            if res["status"] != "removed":
                raise SystemExit(f"round {i}: unplug answered {res}")
            plug.append(t1 - t0)
            unplug.append(t2 - t1)

        # The same operations straight through libvirt-python, on a connection of our own.
        removed: dict[str, threading.Event] = {}
        conn = libvirt.open(args.uri)
        conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
                                    lambda _c, _d, alias, _o: removed.get(alias, threading.Event()).set(), None)
        dom = conn.lookupByUUIDString(vm_id)
        dplug, dunplug = [], []
        for i in range(args.rounds):
            a, b = direct_round(dom, removed, i)
            dplug.append(a)
            dunplug.append(b)
        conn.close()
    finally:
        rpc("VM.destroy", vmId=vm_id)
        srv.shutdown()
        agent.close()

    print(f"rounds: {args.rounds} (TCG guest, machine pc, virtio NIC on bridge pbbr0)")
    print(f"{'operation':<14}{'path':<10}{'median ms':>11}{'p95 ms':>10}")
    for name, via_agent, direct in (("hotplugNic", plug, dplug), ("hotunplugNic", unplug, dunplug)):
        for path, vals in (("agent", via_agent), ("libvirt", direct)):
            print(f"{name:<14}{path:<10}{statistics.median(vals) * 1000:>11.1f}{pct(vals, 95) * 1000:>10.1f}")
        print(f"{name:<14}{'ratio':<10}{statistics.median(via_agent) / statistics.median(direct):>11.2f}"
              f"{pct(via_agent, 95) / pct(direct, 95):>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
