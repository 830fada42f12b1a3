"""Placement of a VM whose flavor asks for PCI devices by alias ("a1:2", seed 003) among 10,000 hosts
of 32 PCI functions each: the one grouped query RunVm asks (engine.commands.flavor_pci.placement,
and the bare engine.dao.pci_devices.hosts_with_free under it) against a per-host Python filter over
the same data in the same run, the way Nova's PciPassthroughFilter works -- every host's device pools
loaded, deep-copied and tested against the request, the passing hosts then weighed by load. Each is
timed as RunVm runs it, in a transaction that has the VM loaded already. Medians of several rounds,
next to the targets; both must name the same hosts in the same order.

    .venv/bin/python bench/placement.py [--hosts 10000] [--rounds 15]

The fleet: host bridges, PCIe root ports (pcieport), USB, SATA and SMBus controllers, a BMC's VGA,
I350 and X710 NICs, NVMe drives, and on some hosts NVIDIA T4 GPUs and ConnectX-5 NICs; the alias's
model (the seed's 82576, 8086:10c9, dual port, both functions in one IOMMU group) on a tenth of the
hosts, a third of those with a function allocated to a running VM (its sibling unavailable); some
hosts in maintenance or unreachable; 20,000 running VMs spread unevenly, so that the order by load
matters. On SQLite (a file in a temporary directory) and, when PLUGBOARD_TEST_DB_URL is set, on that
PostgreSQL database too (its tables are dropped and made anew)."""
from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, insert, select, text
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import scheduler  # noqa: E402
from engine.commands import flavor_pci  # noqa: E402
from engine.dao import db, pci_aliases, pci_devices  # noqa: E402
from engine.dao.models import Cluster, Flavor, Host, HostDevice, Vm, new_id  # noqa: E402
from engine.pci_aliases import Alias, PciRequest, by_name  # noqa: E402
from engine.vocab import ALLOCATED, AVAILABLE, DOWN, HOST_UP, RUNNING_STATUSES, UNAVAILABLE, UP  # noqa: E402

QUERY_TARGET_MS = 20.0
RATIO_TARGET = 20.0
SPEC = "a1:2"
ALIASES = (Alias("a1", "8086", "10c9"), Alias("gpu", "10de", "1eb8"), Alias("nic", "8086", "1521"),
           Alias("nic", "8086", "1572"))
NETWORKS = ["ovirtmgmt"]

# (vendor, product, driver, whitelisted): what a 2-socket server of the fleet has, 32 functions.
BASE = ([("8086", "09a2", None, False)]                                       # host bridge
        + [("8086", "347a", "pcieport", False)] * 8                           # root ports
        + [("8086", "a1af", "xhci_hcd", False), ("8086", "a182", "ahci", False),
           ("8086", "a1a3", "i801_smbus", False), ("1a03", "2000", "ast", False)]
        + [("8086", "1521", "igb", True)] * 4                                 # I350 quad port
        + [("8086", "1572", "i40e", True)] * 2                                # X710 dual port
        + [("144d", "a808", "nvme", False)] * 4)                              # NVMe drives
FILL = [("8086", "2021", "ioatdma", False)] * 16                              # DMA engines: the rest of 32
OPTIONS = {"t4": ([("10de", "1eb8", "nvidia", True)] * 2, 0.15),              # GPUs on 15% of hosts
           "cx5": ([("15b3", "1017", "mlx5_core", True)] * 2, 0.20),          # ConnectX-5 on 20%
           "82576": ([("8086", "10c9", "igb", True)] * 2, 0.10)}              # the alias's model on 10%


def capabilities(i: int) -> dict[str, Any]:
    return {"hostname": f"hv{i:05d}.example", "libvirtVersion": "9.0.0", "qemuVersion": "7.2.0",
            "machineTypes": ["pc", "q35"], "networks": ["default"], "bridges": ["ovirtmgmt", "br-storage"],
            "hooks": {}, "whitelists": {"usb": [], "pci": [{"vendor_id": "8086"}, {"vendor_id": "10de"},
                                                           {"vendor_id": "15b3"}]}, "schemaVersion": "1"}


def build(url: str, n_hosts: int, seed: int) -> tuple[Any, Any, str]:
    """The fleet in a fresh database; returns its engine, its sessions and the id of the VM to place."""
    rng = random.Random(seed)
    engine = db.make_engine(url)
    if not db.is_sqlite(engine):
        db.drop_all(engine)
    db.create_all(engine)
    sessions = db.make_sessions(engine)
    with sessions.begin() as s:
        cluster = Cluster(name="fleet")
        s.add(cluster)
        s.flush()
        pci_aliases.replace_all(s, ALIASES)
        flavor = Flavor(name="m1.pci", memory_mb=2048, vcpus=2, extra_specs={"pci_passthrough:alias": SPEC})
        s.add(flavor)
        s.flush()
        hosts: list[dict[str, Any]] = [{"id": new_id(), "name": f"hv{i:05d}", "cluster_id": cluster.id, "url": f"https://hv{i:05d}:54321/",
                  "status": "maintenance" if rng.random() < 0.02 else "unreachable" if rng.random() < 0.01 else HOST_UP,
                  "capabilities": capabilities(i), "last_event_seq": 0} for i in range(n_hosts)]
        s.execute(insert(Host), hosts)
        up = [h["id"] for h in hosts if h["status"] == HOST_UP]
        vms: list[dict[str, Any]] = []
        for i in range(20_000):         # running VMs, unevenly spread: some hosts busy, some idle
            vms.append({"id": new_id(), "name": f"vm{i:06d}", "cluster_id": cluster.id, "status": UP,
                        "run_on_host": up[int(len(up) * rng.random() ** 2)], "flavor": flavor.id})
        vms += [{"id": new_id(), "name": f"down{i:06d}", "cluster_id": cluster.id, "status": DOWN,
                 "run_on_host": None, "flavor": flavor.id} for i in range(5_000)]
        s.execute(insert(Vm), vms)
        running_on: dict[str, list[str]] = defaultdict(list)
        for vm in vms:
            if vm["run_on_host"]:
                running_on[vm["run_on_host"]].append(vm["id"])
        rows = []
        for host in hosts:
            funcs = list(BASE)
            for extra, share in OPTIONS.values():
                if rng.random() < share:
                    funcs += extra
            funcs = (funcs + FILL)[:32]
            held = host["status"] == HOST_UP and ("8086", "10c9", "igb", True) in funcs and rng.random() < 1 / 3 \
                and running_on[host["id"]]
            for f, (vendor, product, driver, allowed) in enumerate(funcs):
                address = f"0000:{f // 4 + 1:02x}:00.{f % 4}" if product != "10c9" else f"0000:80:00.{f % 2}"
                group = 80 if product == "10c9" else f       # the dual-port card's two functions share a group
                status, vm_id = (AVAILABLE if allowed else UNAVAILABLE), None
                if held and product == "10c9":
                    status, vm_id = (ALLOCATED, running_on[host["id"]][0]) if address.endswith(".0") \
                        else (UNAVAILABLE, None)
                rows.append({"host_id": host["id"], "identity": f"pci:{address}:{vendor}:{product}:",
                             "name": "pci_" + address.replace(":", "_").replace(".", "_"), "capability": "pci",
                             "vendor_id": vendor, "product_id": product, "pci_address": address,
                             "iommu_group": group, "driver": driver, "parent": "computer", "allowed": allowed,
                             "status": status, "vm_id": vm_id, "present": True})
        for at in range(0, len(rows), 20_000):
            s.execute(insert(HostDevice), rows[at:at + 20_000])
        target = Vm(name="placed", cluster_id=cluster.id, status=DOWN, flavor=flavor.id)
        s.add(target)
        s.flush()
        vm_id = target.id
    # Fresh planner statistics and (PostgreSQL) visibility maps, as autovacuum leaves a live database.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE" if db.is_sqlite(engine) else "VACUUM ANALYZE"))
    return engine, sessions, vm_id


# ---- the per-host Python filter (Nova's PciPassthroughFilter) ----------------------------------------

def pools_of(s: Session) -> dict[str, list[dict[str, Any]]]:
    """Every host's free, whitelisted PCI devices as Nova's pci_stats pools: one per (vendor, product),
    with its count and its devices."""
    pools: dict[str, dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
    rows = s.execute(select(HostDevice.host_id, HostDevice.vendor_id, HostDevice.product_id, HostDevice.pci_address)
                     .where(HostDevice.capability == "pci", HostDevice.status == AVAILABLE,
                            HostDevice.present.is_(True), HostDevice.allowed.is_(True)))
    for host_id, vendor, product, address in rows:
        pool = pools[host_id].setdefault((vendor, product), {"vendor_id": vendor, "product_id": product,
                                                             "dev_type": "type-PCI", "numa_node": None,
                                                             "count": 0, "devices": []})
        pool["count"] += 1
        pool["devices"].append({"address": address, "vendor_id": vendor, "product_id": product})
    return {host_id: list(by_ids.values()) for host_id, by_ids in pools.items()}


def supports(pools: list[dict[str, Any]], wants: list[PciRequest], pairs: dict[str, list[tuple[str, str]]]) -> bool:
    """PciDeviceStats.support_requests: on a deep copy of the pools, take each request's count from
    the pools its alias matches."""
    pools = copy.deepcopy(pools)
    for want in wants:
        needed = want.count
        for pool in pools:
            if (pool["vendor_id"], pool["product_id"]) in pairs[want.alias]:
                taken = min(needed, pool["count"])
                pool["count"] -= taken
                del pool["devices"][:taken]
                needed -= taken
        if needed:
            return False
    return True


def python_filter(s: Session, vm: Vm) -> list[str]:
    """The hosts the filter passes, weighed: least loaded first, then by name."""
    flavor = s.get(Flavor, vm.flavor)
    assert flavor is not None
    wants = [PciRequest(name, int(count)) for name, count in
             (part.split(":") for part in flavor.extra_specs["pci_passthrough:alias"].split(","))]
    pairs = by_name(pci_aliases.list_all(s))
    hosts = s.execute(select(Host.id, Host.name, Host.capabilities)
                      .where(Host.cluster_id == vm.cluster_id, Host.status == HOST_UP)).all()
    pools = pools_of(s)
    load = dict(s.execute(select(Vm.run_on_host, func.count()).where(Vm.status.in_(RUNNING_STATUSES))
                          .group_by(Vm.run_on_host)).tuples().all())
    passing = [(load.get(h.id, 0), h.name) for h in hosts
               if scheduler.has_networks(h.capabilities, NETWORKS) and supports(pools.get(h.id, []), wants, pairs)]
    return [name for _, name in sorted(passing)]


# ---- the query ---------------------------------------------------------------------------------------

def placement(s: Session, vm: Vm) -> list[str]:
    """What RunVm asks: flavor_pci.placement (the flavor and the aliases read, the query, the networks)."""
    place = flavor_pci.placement(s, vm, networks=NETWORKS, cluster_name="fleet")
    assert place is not None
    return [h.name for h in place.hosts]


def bare_query(s: Session, vm: Vm, limit: int | None = flavor_pci.SHORTLIST) -> list[str]:
    """pci_devices.hosts_with_free alone: the best `limit` hosts, as RunVm asks (None: every one)."""
    hosts = pci_devices.hosts_with_free(s, [PciRequest("a1", 2)], by_name(ALIASES), cluster_id=vm.cluster_id,
                                        host_status=HOST_UP, running_statuses=RUNNING_STATUSES, limit=limit)
    return [h.name for h in hosts]


def every_host(s: Session, vm: Vm) -> list[str]:
    return bare_query(s, vm, None)


def timed(sessions: Any, vm_id: str, fn: Callable[[Session, Vm], list[str]]) -> tuple[float, float, list[str]]:
    """Wall-clock and this process's CPU milliseconds of fn(), and its answer. It runs as RunVm runs it:
    in a transaction that has the VM loaded already (not timed), in a session of its own."""
    with sessions.begin() as s:
        vm = s.get(Vm, vm_id)
        start, cpu = time.perf_counter(), time.process_time()
        result = fn(s, vm)
        return (time.perf_counter() - start) * 1000, (time.process_time() - cpu) * 1000, result


def run(url: str, n_hosts: int, rounds: int, explain: bool) -> dict[str, Any]:
    start = time.perf_counter()
    engine, sessions, vm_id = build(url, n_hosts, seed=3)
    built = time.perf_counter() - start
    with sessions() as s:
        devices = s.scalar(select(func.count()).select_from(HostDevice))
    steps: dict[str, Callable[[Session, Vm], list[str]]] = {"placement": placement, "query": bare_query,
                                                            "all": every_host, "python": python_filter}
    times: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    answers: dict[str, list[str]] = {}
    for _ in range(rounds):
        for name, fn in steps.items():
            ms, cpu_ms, answers[name] = timed(sessions, vm_id, fn)
            times[name].append(ms)
            cpu[name].append(cpu_ms)
    # The same hosts in the same order: every one, and the shortlist RunVm reads is their start.
    assert answers["all"] == answers["python"], "the query and the filter disagree"
    assert answers["placement"] == answers["query"] == answers["python"][:flavor_pci.SHORTLIST], "shortlist"
    if explain:
        print_plan(engine, sessions, vm_id)
    engine.dispose()
    return {"devices": devices, "built": built, "hosts_found": len(answers["python"]),
            **{name: statistics.median(values) for name, values in times.items()},
            **{f"{name}_cpu": statistics.median(values) for name, values in cpu.items()}}


def print_plan(engine: Any, sessions: Any, vm_id: str) -> None:
    """The query's plan: EXPLAIN QUERY PLAN on SQLite, EXPLAIN ANALYZE on PostgreSQL."""
    sent: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        sent.append((statement, params))

    with sessions() as s:
        vm = s.get(Vm, vm_id)
        event.listen(engine, "before_cursor_execute", keep)
        try:
            pci_devices.hosts_with_free(s, [PciRequest("a1", 2)], by_name(ALIASES), cluster_id=vm.cluster_id,
                                        host_status=HOST_UP, running_statuses=RUNNING_STATUSES,
                                        limit=flavor_pci.SHORTLIST)
        finally:
            event.remove(engine, "before_cursor_execute", keep)
    statement, params = sent[-1]
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN ANALYZE "
    with engine.connect() as conn:
        plan = conn.exec_driver_sql(prefix + statement, params).all()
    print(f"-- {engine.dialect.name}: the query's plan\n" + "\n".join(" | ".join(map(str, row)) for row in plan))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--explain", action="store_true", help="print the query's plan")
    args = parser.parse_args()
    urls = {}
    with tempfile.TemporaryDirectory() as tmp:
        urls["sqlite"] = f"sqlite:///{tmp}/bench.db"
        if os.environ.get("PLUGBOARD_TEST_DB_URL"):
            urls["postgresql"] = os.environ["PLUGBOARD_TEST_DB_URL"]
        results = {name: run(url, args.hosts, args.rounds, args.explain) for name, url in urls.items()}
    print(f"PCI placement of a VM asking {SPEC!r} among {args.hosts} hosts x 32 PCI functions, "
          f"median of {args.rounds} rounds (ms)")
    print(f"{'database':<12}{'devices':>9}{'hosts ok':>9}{'placement':>11}{'query':>8}{'target':>8}{'ratio':>7}   "
          f"{'python':>8}{'speed-up':>10}{'target':>8}   {'all hosts':>9}   {'cpu: placement':>14}{'python':>8}")
    for name, r in results.items():
        speedup = r["python"] / r["placement"]
        print(f"{name:<12}{r['devices']:>9}{r['hosts_found']:>9}{r['placement']:>11.2f}{r['query']:>8.2f}"
              f"{QUERY_TARGET_MS:>8.0f}{r['placement'] / QUERY_TARGET_MS:>7.2f}   {r['python']:>8.1f}"
              f"{speedup:>9.1f}x{RATIO_TARGET:>7.0f}x   {r['all']:>9.2f}   {r['placement_cpu']:>14.2f}"
              f"{r['python_cpu']:>8.1f}")
    print(f"placement = flavor_pci.placement as RunVm calls it (flavor, aliases, the query for the best "
          f"{flavor_pci.SHORTLIST} hosts, their networks); query = that pci_devices.hosts_with_free alone;")
    print("python = every host's pools loaded, deep-copied and tested, then weighed (Nova's PciPassthroughFilter); "
          "all hosts = the query for every host that has them;")
    print("ratio = placement / target (<= 1 meets it); speed-up = python / placement (>= target meets it). "
          "The query and the filter found the same hosts in the same order.")
    print("cpu = this process's CPU time (with SQLite it includes the database's work; with PostgreSQL only the "
          "client's): what the figures are on a machine busy with other work, where wall time waits for a CPU.")


if __name__ == "__main__":
    main()
