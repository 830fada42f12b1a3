"""Attach PCI devices to a VM by alias (seed 003's os-pci_attachments): `count` devices of `alias`, or
Nova's request text ("a1:2,b1:1") when several aliases go in one request. Members may: an alias is
what an admin allowed (DESIGN.md Security); the loader checks the VM's project.

Running VM: every device of the request is claimed (compare-and-set, IOMMU groups whole) and gets its
row in one short transaction, then each is plugged live through the device core, one after the other.
All or nothing: when one fails, the ones already plugged are unplugged and every row of the request
goes, its device given back. An unplug the guest is slow to finish is marked for detach and ends when
the host reports it (engine.devices.claims.DETACH). A q35 VM needs a free PCIe root port per device.

Stopped VM: a change of its definition only. The devices are allocated at once on the host its held
devices pin it to, else on the first up host of its cluster that has them free -- which then pins it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from engine import reasons as R
from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common, flavor_pci, hostdev_rules, pci_rules
from engine.commands.outcome import Outcome
from engine.dao import audit, clusters, devices, pci_devices, vms as vms_dao
from engine.dao.models import Host, Vm, VmDevice
from engine.devices import claims, live, pcie_ports, state
from engine.errors import Conflict, EngineError, HostUnreachable, Reason
from engine.hostclient import HostClientFactory
from engine.pci_aliases import MAX_COUNT, NAME_RE, PciRequest, format_request, parse_request
from engine.vocab import PLUG_STATUSES, STABLE, UP

log = logging.getLogger(__name__)

AUDIT = "PCI_ATTACH"


@dataclass(frozen=True)
class Params:
    vm_id: str
    alias: str = ""
    count: int = 1
    request: str | None = None      # Nova's "a1:2,b1:1" (the facade's body), instead of alias and count


def requests_of(params: Params) -> tuple[tuple[PciRequest, ...], list[Reason]]:
    """What the request asks for, and a reason for each way it is malformed."""
    if params.request is not None:
        found, problems = parse_request(params.request)
        return found, [R.pci_request_invalid(params.request, p) for p in problems]
    count, problems = params.count, []
    if not isinstance(params.alias, str) or not NAME_RE.match(params.alias):
        problems.append("the alias must be a name of 1-64 letters, digits, '_', '.' or '-'")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        problems.append(f"the count must be a whole number from 1 to {MAX_COUNT}")
    if problems:
        return (), [R.pci_request_invalid(f"{params.alias}:{count}", p) for p in problems]
    return (PciRequest(params.alias, count),), []


def validate(params: Params, *, vm: Vm, configured: set[str] | frozenset[str], device_reasons: list[Reason],
             free_ports: int | None) -> list[Reason]:
    """canDo of PciAttach. `configured`: the alias names configured; `device_reasons`: why the devices
    cannot be had where the VM is (or would be) -- checked only for a well-formed request;
    `free_ports`: the PCIe root ports free for hot-plug on a running q35 VM (else None)."""
    requests, found = requests_of(params)
    found += pci_rules.unknown_aliases(requests, configured)
    if vm.status not in PLUG_STATUSES:
        found.append(R.vm_status_illegal(vm.name, vm.status, PLUG_STATUSES, "attach PCI devices"))
    found += device_reasons
    if vm.status == UP:
        found += pcie_ports.check(vm, free_ports, sum(r.count for r in requests))
    return found


@dataclass
class Plan:
    """What the checks read, and where the devices would come from."""

    requests: tuple[PciRequest, ...] = ()
    pairs: pci_devices.Pairs = field(default_factory=dict)
    hosts: list[Host] = field(default_factory=list)     # a running VM's host; a stopped VM's candidates
    inputs: dict[str, Any] = field(default_factory=dict)


def _plan(s: Session, vm: Vm, params: Params) -> Plan:
    requests, bad = requests_of(params)
    pairs, unknown = pci_rules.alias_pairs(s, requests)
    plan = Plan(requests, pairs)
    vm_devices = devices.list_for_vm(s, vm.id)
    reasons: list[Reason] = []
    if requests and not bad and not unknown and vm.status in PLUG_STATUSES:
        plan.hosts, reasons = _hosts(s, vm, requests, pairs, vm_devices)
    plan.inputs = {"configured": frozenset(pairs), "device_reasons": reasons,
                   "free_ports": pcie_ports.free(vm, vm_devices)}
    return plan


def _hosts(s: Session, vm: Vm, requests: tuple[PciRequest, ...], pairs: pci_devices.Pairs,
           vm_devices: Any) -> tuple[list[Host], list[Reason]]:
    """The hosts the devices may come from, in order, and why none can when none can."""
    if vm.status == UP:
        host = common.load_host(s, vm)
        if host is None:
            return [], [R.host_not_found(vm.run_on_host)]
        if pci_rules.fits(s, vm, host.id, requests, pairs):
            return [host], []
        return [], pci_rules.shortage(s, host.name, host.id, requests, pairs)
    cluster = clusters.get(s, vm.cluster_id)
    networks = sorted({d.nic.network for d in vm_devices if d.is_plugged and d.nic is not None})
    place = flavor_pci.place(s, vm, requests, flavor="", networks=networks,
                             cluster_name=cluster.name if cluster else vm.cluster_id,
                             host_id=hostdev_rules.pinned_host(s, vm))
    hosts = [h for h in place.hosts[:flavor_pci.TRIES] if pci_rules.fits(s, vm, h.id, requests, pairs)]
    if hosts or not place.hosts:
        return hosts, place.reasons
    first = place.hosts[0]
    return [], pci_rules.shortage(s, first.name, first.id, requests, pairs)


def check(s: Session, vm: Vm, params: Params) -> list[Reason]:
    """canDo with its inputs read from the database (what execute checks; nothing changes)."""
    return validate(params, vm=vm, **_plan(s, vm, params).inputs)


def _what(params: Params) -> str:
    return params.request if params.request is not None else f"{params.alias}:{params.count}"


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    with common.audited(sessions, AUDIT, vm_id=params.vm_id):
        with sessions.begin() as s:
            vm = common.load_vm(s, principal, params.vm_id, for_update=True)
            plan = _plan(s, vm, params)
            found = validate(params, vm=vm, **plan.inputs)
            if found:
                raise common.refusal(found, f"Cannot attach PCI devices {_what(params)} to VM {vm.name}.")
            running = vm.status == UP
            rows, host = _take(s, vm, plan, running)
            ids = tuple(r.id for r in rows)
            asked = format_request(plan.requests)
            if not running:
                audit.record(s, "PCI_ATTACHED", f"PCI devices {asked} attached to VM {vm.name} (its definition; "
                             f"applied at its next start): {_labels(rows)}", vm_id=vm.id, host_id=host.id,
                             devices=list(ids), request=asked)
                return Outcome(id=ids[0], created=True, ids=ids)
    _plug_all(sessions, hosts, vm_id=params.vm_id, ids=ids, asked=asked, principal=principal)
    return Outcome(id=ids[0], created=True, ids=ids)


def _take(s: Session, vm: Vm, plan: Plan, running: bool) -> tuple[list[VmDevice], Host]:
    """Claim the devices on the first host that still has them (another request may have taken one
    since the checks) and make the VM's rows: plugged and allocated at once on a stopped VM, left for
    the live plug on a running one."""
    for host in plan.hosts:
        rows = pci_rules.take(s, vm, host.id, plan.requests, plan.pairs, origin=pci_rules.ATTACHMENT,
                              plugged=not running, allocate=not running)
        if rows is not None:
            return rows, host
    host = plan.hosts[0]
    raise common.refusal(pci_rules.shortage(s, host.name, host.id, plan.requests, plan.pairs),
                         f"Cannot attach PCI devices {format_request(plan.requests)} to VM {vm.name}.")


def _labels(rows: list[VmDevice]) -> str:
    return ", ".join(f"{pci_rules.alias_of(r)} at {hd.pci_address}" for r in rows
                     if (hd := r.host_device) is not None)


def _plug_all(sessions: common.Sessions, hosts: HostClientFactory, *, vm_id: str, ids: tuple[str, ...], asked: str,
              principal: Principal) -> None:
    """Plug each row live, in order; the first failure rolls the whole request back and is raised."""
    plugged: list[str] = []
    for dev_id in ids:
        try:
            with sessions.begin() as s:
                vm = common.load_vm(s, principal, vm_id, for_update=True)
                dev = devices.get(s, dev_id)
                host = common.running_host(s, vm)
                if dev is None or dev.vm_id != vm_id or host is None:
                    raise Conflict(f"Cannot attach PCI devices {asked} to VM {vm.name}: it stopped, or the "
                                   "request's devices changed, while they were being plugged.",
                                   reasons=[R.vm_status_illegal(vm.name, vm.status, (UP,), "attach PCI devices")])
                call = live.prepare(s, dev, state.Subject.of(dev, vm, host), host, plug=True)
            live.run(sessions, hosts, call)
        except EngineError as err:
            _roll_back(sessions, hosts, vm_id=vm_id, ids=ids, plugged=plugged, asked=asked, err=err)
            raise
        plugged.append(dev_id)
    with sessions.begin() as s:
        vm = common.load_vm(s, principal, vm_id)
        rows = [d for d in (devices.get(s, i) for i in ids) if d is not None]
        audit.record(s, "PCI_ATTACHED", f"PCI devices {asked} attached to VM {vm.name}: {_labels(rows)}",
                     vm_id=vm_id, host_id=vm.run_on_host, devices=list(ids), request=asked)


def _roll_back(sessions: common.Sessions, hosts: HostClientFactory, *, vm_id: str, ids: tuple[str, ...],
               plugged: list[str], asked: str, err: EngineError) -> None:
    """Undo a request that failed part way: the devices plugged are unplugged, marked for detach (their
    rows go with their devices, at once or when the host reports the guest released them); the rows
    never plugged, or whose plug failed, go now with their devices. A plug whose answer was lost stays
    in flight for reconciliation, marked for detach too."""
    kept: list[str] = []
    for dev_id in plugged:
        if not _unplug_for_good(sessions, hosts, vm_id, dev_id):
            kept.append(dev_id)
    with sessions.begin() as s:
        for dev_id in ids:
            dev = devices.get(s, dev_id)
            if dev is None or dev_id in plugged:
                continue
            claims.mark_detach(dev)
            if dev.plug_state == STABLE:
                claims.release(s, dev_id)       # the mark takes the row with it
        vm = vms_dao.get(s, vm_id)
        name = vm.name if vm is not None else vm_id
        audit.record(s, "PCI_ATTACH_ROLLED_BACK", f"Attach of PCI devices {asked} to VM {name} undone: "
                     f"{err.message}" + (f"; still plugged (their unplug failed): {', '.join(kept)}" if kept else ""),
                     severity="warning" if not kept else "error", vm_id=vm_id, devices=list(ids), kept=kept,
                     request=asked)


def _unplug_for_good(sessions: common.Sessions, hosts: HostClientFactory, vm_id: str, dev_id: str) -> bool:
    """Unplug a device plugged by the failed request, marked for detach; a VM no longer up just loses
    the row. False when the device stays (its unplug failed: the mark is taken off)."""
    with sessions.begin() as s:
        vm = vms_dao.get(s, vm_id)
        dev = devices.get(s, dev_id)
        if vm is None or dev is None:
            return True
        claims.mark_detach(dev)
        host = common.running_host(s, vm)
        if host is None or dev.plug_state != STABLE or not dev.is_plugged:
            if dev.plug_state == STABLE:
                claims.release(s, dev_id)
            return True
        call = live.prepare(s, dev, state.Subject.of(dev, vm, host), host, plug=False)
    try:
        live.run(sessions, hosts, call)
    except HostUnreachable as err:
        if err.outcome_unknown:      # in flight, marked: whatever the host did, the row follows
            return True
        return _keep(sessions, dev_id)
    except EngineError:
        return _keep(sessions, dev_id)
    return True


def _keep(sessions: common.Sessions, dev_id: str) -> bool:
    with sessions.begin() as s:
        dev = devices.get(s, dev_id)
        if dev is not None:
            claims.mark_detach(dev, False)
    log.warning("PCI device row %s stays plugged: its unplug during a rollback failed", dev_id)
    return False
