"""PCI passthrough in the UI.

A VM's "PCI devices" sub-tab (engine.ui.vm_page renders it with attachment_rows and tab_facts): each
PCI function the VM has -- attached by alias, or given by its flavor at start -- with its host node
and address, the guest address libvirt reported, ids and names, alias and status; the free PCIe
slots of a running q35 VM; Detach (pci_detach), gated by the engine's canDo. The "Attach PCI devices"
dialog lists the configured aliases (read from the database: members attach by alias too, and the
alias API is an admin's), each with pci_attach's own verdict for one device -- an alias with no free
device where the VM is, or whose IOMMU groups are kept, is shown with its reasons and cannot be
picked -- and a count; it runs pci_attach.

And the PCI part of a host's device inventory (engine.ui.hostdevs renders the page with
inventory_rows): each function's address, ids and names, IOMMU group, driver, the configured aliases
that name it, whitelist verdict, status (and why an unavailable one is), and the VM that holds it."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from flask import Blueprint, render_template
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from engine import reasons as R
from engine.commands import hostdev_rules, pci_attach, pci_detach, pci_rules
from engine.commands.common import load_vm
from engine.dao import host_devices, pci_aliases, pci_devices, vms as vms_dao
from engine.dao.host_devices import HELD
from engine.dao.models import HostDevice, Vm, VmDevice
from engine.pci_aliases import MAX_COUNT, PciRequest, by_name
from engine.ui.actions import done
from engine.ui.context import principal, run, sessions
from engine.ui.forms import Form, FormInvalid
from engine.ui.views import error_text
from engine.errors import Reason
from engine.vocab import DOWN, UNAVAILABLE, UP

PCI = "pci"


def hex_id(value: str | None) -> str:
    """A vendor or product id as aliases spell it (lower case, no 0x)."""
    return (value or "").lower().removeprefix("0x")


def aliases_by_ids(s: Session) -> dict[tuple[str, str], list[str]]:
    """(vendor_id, product_id) -> the names of the configured aliases naming that pair."""
    out: dict[tuple[str, str], list[str]] = {}
    for a in pci_aliases.list_all(s):
        out.setdefault((a.vendor_id, a.product_id), []).append(a.name)
    return out


def _why_unavailable(hd: HostDevice, held_in_group: Sequence[HostDevice]) -> str:
    if hd.status != UNAVAILABLE:
        return ""
    if not hd.allowed:
        return "not on the host's whitelist"
    others = [h for h in held_in_group if h.id != hd.id]
    if others:
        return (f"IOMMU group {hd.iommu_group} is held through "
                + ", ".join(h.pci_address or h.name for h in others))
    return ""


def inventory_rows(found: Iterable[HostDevice], group_of_host: Iterable[HostDevice],
                   vm_names: Mapping[str, str], aliases: Mapping[tuple[str, str], list[str]]) -> list[dict[str, Any]]:
    """What the inventory page shows of each PCI function in `found`; `group_of_host`: every PCI
    function of the host (what holds each IOMMU group)."""
    held: dict[int, list[HostDevice]] = {}
    for hd in group_of_host:
        if hd.iommu_group is not None and hd.status in HELD:
            held.setdefault(hd.iommu_group, []).append(hd)
    rows = []
    for hd in found:
        vendor, product = hex_id(hd.vendor_id), hex_id(hd.product_id)
        rows.append({
            "hd_id": hd.id, "name": hd.name, "address": hd.pci_address or "", "vendor_id": vendor,
            "product_id": product, "ids": f"{vendor}:{product}", "vendor": hd.vendor_name or "",
            "product": hd.product_name or "", "iommu_group": hd.iommu_group, "driver": hd.driver or "",
            "aliases": aliases.get((vendor, product), []), "allowed": hd.allowed, "hd_status": hd.status,
            "why": _why_unavailable(hd, held.get(hd.iommu_group, []) if hd.iommu_group is not None else []),
            "holder": hd.vm_id, "holder_name": vm_names.get(hd.vm_id or "", hd.vm_id or ""),
            "present": hd.present, "error": error_text(hd.last_error)})
    return rows


# ---- the VM's "PCI devices" sub-tab -------------------------------------------------------------------

def guest_address(address: Mapping[str, Any] | None) -> str:
    """The guest PCI address libvirt reported ({"domain": "0x0000", "bus": "0x07", ...}) as lspci
    writes it inside the guest ("0000:07:00.0"); empty when there is none (not plugged, or a stopped
    VM's definition)."""
    if not address or address.get("type", "pci") != "pci" or "slot" not in address:
        return ""
    try:
        domain, bus, slot, function = (int(str(address.get(k, "0")), 16)
                                       for k in ("domain", "bus", "slot", "function"))
    except ValueError:
        return ""
    return f"{domain:04x}:{bus:02x}:{slot:02x}.{function:x}"


def is_pci(dev: VmDevice) -> bool:
    return pci_rules.is_pci(dev)


def attachment_rows(s: Session, rows: list[dict[str, Any]], devices: Sequence[VmDevice]) -> None:
    """Adds to each device row of the VM's PCI devices tab its host function (node name, host address,
    ids and names, IOMMU group), the guest address, the alias that asked for it and where it came
    from (a flavor at start, or an attachment)."""
    by_id = {d.id: d for d in devices}
    for row in rows:
        dev = by_id[row["id"]]
        hd = host_devices.get(s, dev.host_device_id) if dev.host_device_id is not None else None
        vendor, product = (hex_id(hd.vendor_id), hex_id(hd.product_id)) if hd is not None else ("", "")
        row.update(
            hd_id=hd.id if hd is not None else None, node=hd.name if hd is not None else "",
            host_address=(hd.pci_address or "") if hd is not None else "",
            guest_address=guest_address(dev.address), vendor_id=vendor, product_id=product,
            vendor=(hd.vendor_name or "") if hd is not None else "",
            product=(hd.product_name or "") if hd is not None else "",
            iommu_group=hd.iommu_group if hd is not None else None,
            hd_status=hd.status if hd is not None else "", missing=hd is None or not hd.present,
            host_name=hostdev_rules.host_name(s, hd.host_id) if hd is not None else "",
            pci_alias=pci_rules.alias_of(dev) or "", origin=pci_rules.origin(dev) or pci_rules.ATTACHMENT)


def tab_facts(s: Session, vm: Vm) -> dict[str, Any]:
    """What the tab says besides its rows: the free hot-plug PCIe slots of a running q35 VM (None for
    any other VM)."""
    return {"ports_free": pci_rules.pcie_ports_free(vm)}


# ---- the Attach PCI devices dialog --------------------------------------------------------------------

def _dialog_host(s: Session, vm: Vm) -> str | None:
    """The host whose free devices the dialog counts: the one the VM runs on, else the one its held
    devices pin it to (a stopped VM without any is placed when the devices are attached)."""
    if vm.status != DOWN and vm.run_on_host:
        return vm.run_on_host
    return hostdev_rules.pinned_host(s, vm)


def alias_choices(s: Session, vm: Vm, *, admin: bool) -> tuple[list[dict[str, Any]], str]:
    """The configured aliases, each with the reasons pci_attach would refuse one device of it now (an
    alias with reasons cannot be picked); for admins also the ids it stands for and how many devices
    of it are free on the VM's host. And that host's name ("" when the VM has none yet)."""
    pairs = by_name(pci_aliases.list_all(s))
    host_id = _dialog_host(s, vm)
    names = sorted(pairs)
    free = pci_devices.free_counts(s, [PciRequest(n, 1) for n in names], pairs, [host_id]) \
        if admin and host_id and names else [None] * len(names)
    out = []
    for name, count in zip(names, free):
        reasons = pci_attach.check(s, vm, pci_attach.Params(vm.id, name, 1))
        out.append({"name": name, "ids": [f"{v}:{p}" for v, p in pairs[name]] if admin else [],
                    "free": count, "selectable": not reasons, "reasons": [r.to_dict() for r in reasons],
                    "why": " ".join(r.message for r in reasons)})
    return out, hostdev_rules.host_name(s, host_id) if host_id else ""


def attach_dialog(vm_id: str) -> str:
    who = principal()
    with sessions()() as s:
        vm = load_vm(s, who, vm_id)
        aliases, host_name = alias_choices(s, vm, admin=who.is_admin)
        facts = {"vm_name": vm.name, "running": vm.status == UP, "ports_free": pci_rules.pcie_ports_free(vm)}
    return render_template("_pci_dialog.html", vm_id=vm_id, aliases=aliases, host_name=host_name,
                           max_count=MAX_COUNT, **facts)


def _next_start(vm_id: str) -> str | None:
    with sessions()() as s:
        vm = vms_dao.get(s, vm_id)
        return "applied at the VM's next start" if vm is not None and vm.status == DOWN else None


def attach(vm_id: str) -> Response:
    form = Form()
    alias = form.text("alias")
    count = form.integer("count", 1)
    form.check()
    if alias is None:
        reason = Reason(R.INVALID_FIELD, "alias: pick a PCI alias.", {"field": "alias"})
        raise FormInvalid("The form is not valid: " + reason.message, reasons=[reason])
    outcome = run(pci_attach, vm_id=vm_id, alias=alias, count=count)
    attached = len(outcome.ids) or count
    return done(f"{attached} PCI device{'s' if attached != 1 else ''} of alias {alias} attached.",
                note=_next_start(vm_id))


def detach(vm_id: str, dev_id: str) -> Response:
    outcome = run(pci_detach, vm_id=vm_id, attachment_id=dev_id)
    if outcome.pending:
        return done("PCI device detaching: waiting for the guest to release it.")
    return done("PCI device detached.", note=_next_start(vm_id))


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/vms/<vm_id>/pcidevs/new", "pci_attach_dialog", attach_dialog, methods=["GET"])
    bp.add_url_rule("/vms/<vm_id>/pcidevs", "pci_attach", attach, methods=["POST"])
    bp.add_url_rule("/vms/<vm_id>/pcidevs/<dev_id>/detach", "pci_detach", detach, methods=["POST"])
