"""USB host devices in the UI (admins: raw assignment, as the commands require): the "Host devices"
sub-tab of a VM lists them (engine.ui.vm_page renders it with host_device_rows); the "Add host device"
dialog lists the USB devices of the VM's host as cockpit-machines does (product, vendor, location,
serial), each with the verdict of add_hostdev's own canDo -- a device held by another VM, off the
whitelist, gone, or on another host is shown with its reasons and cannot be picked; Activate,
Deactivate and Remove run plug_unplug_hostdev and remove_hostdev; and a host's device inventory page
(its USB devices, and its PCI functions as engine.ui.pci shows them). Members are refused before the
view runs (engine.ui.authorize)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template, request
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from engine import reasons as R
from engine.commands import add_hostdev, hostdev_rules, plug_unplug_hostdev, remove_hostdev
from engine.commands.common import load_vm
from engine.dao import host_devices, hosts as hosts_dao, vms as vms_dao
from engine.dao.models import HostDevice, Vm, VmDevice
from engine.ui import pci
from engine.ui.actions import done
from engine.ui.context import principal, run, sessions
from engine.ui.forms import Form, FormInvalid
from engine.ui.views import error_text
from engine.errors import Reason
from engine.vocab import DOWN, HOSTDEV_STATUSES, REMOVED, UP

#: Pages and actions for admins only (engine.ui.ADMIN_ENDPOINTS).
ENDPOINTS = ("hostdev_new_dialog", "hostdev_new", "hostdev_action", "host_devices")
USB = hostdev_rules.USB
STARTUP = {True: "required", False: "optional"}


def _facts(hd: HostDevice | None, vm_names: dict[str, str]) -> dict[str, Any]:
    """What the pages show of one inventory row."""
    if hd is None:
        return {"hd_id": None, "product": "", "vendor": "", "location": "", "serial": "", "hd_status": "",
                "present": False, "holder": None, "holder_name": "", "host_id": None}
    return {"hd_id": hd.id, "product": hd.product_name or hd.product_id,
            "vendor": hd.vendor_name or hd.vendor_id, "ids": f"{hd.vendor_id}:{hd.product_id}",
            "location": hd.port_path or hd.pci_address or hd.name, "serial": hd.serial or "",
            "hd_status": hd.status, "present": hd.present, "holder": hd.vm_id,
            "holder_name": vm_names.get(hd.vm_id or "", hd.vm_id or ""), "host_id": hd.host_id,
            "error": error_text(hd.last_error)}


def _vm_names(s: Session, ids: set[str | None]) -> dict[str, str]:
    out = {}
    for vm_id in ids - {None}:
        vm = vms_dao.get(s, vm_id)  # type: ignore[arg-type]
        if vm is not None:
            out[vm.id] = vm.name
    return out


def host_device_rows(s: Session, rows: list[dict[str, Any]], devices: list[VmDevice]) -> None:
    """Adds to each device row of the VM's Host devices tab its inventory facts, startup policy and
    whether the device is missing from its host."""
    by_id = {d.id: d for d in devices}
    for row in rows:
        dev = by_id[row["id"]]
        hd = host_devices.get(s, dev.host_device_id) if dev.host_device_id is not None else None
        row.update(_facts(hd, {}))
        row["required"] = (dev.spec_params or {}).get("startupPolicy") == add_hostdev.STARTUP_POLICIES[True]
        row["startup"] = STARTUP[row["required"]]
        row["missing"] = hd is None or not hd.present
        row["host_name"] = hostdev_rules.host_name(s, hd.host_id) if hd is not None else ""


# ---- the Add host device dialog ---------------------------------------------------------------------

def dialog_host(s: Session, vm: Vm, asked: str | None) -> tuple[str | None, bool]:
    """The host whose devices the dialog lists, and whether the user may pick another: the host the VM
    runs on; for a VM that does not run, the host its devices pin it to, else the one asked for."""
    if vm.status != DOWN and vm.run_on_host:
        return vm.run_on_host, False
    pinned = hostdev_rules.pinned_host(s, vm)
    if pinned is not None:
        return pinned, False
    return (asked or None), True


def choices(s: Session, vm: Vm, host_id: str) -> list[dict[str, Any]]:
    """The host's USB devices (those gone from it left out, unless a VM still holds them), each with the
    reasons add_hostdev would refuse it now: a device with reasons cannot be picked."""
    found = [d for d in host_devices.list_for_host(s, host_id, capability=USB)
             if d.status != REMOVED or d.vm_id is not None]
    names = _vm_names(s, {d.vm_id for d in found})
    out = []
    for hd in found:
        reasons = add_hostdev.check(s, vm, add_hostdev.Params(vm.id, hd.id))
        row = _facts(hd, names)
        row["mine"] = hd.vm_id == vm.id
        row["reasons"] = [r.to_dict() for r in reasons]
        row["why"] = " ".join(r.message for r in reasons)
        row["selectable"] = not reasons
        out.append(row)
    return out


def hostdev_dialog(vm_id: str) -> str:
    asked = request.args.get("host") or None
    with sessions()() as s:
        vm = load_vm(s, principal(), vm_id)
        host_id, may_pick = dialog_host(s, vm, asked)
        host = hosts_dao.get(s, host_id) if host_id else None
        if asked and host is None:
            abort(404)
        hosts = [{"id": h.id, "name": h.name} for h in hosts_dao.list(s)] if may_pick else []
        listed = choices(s, vm, host.id) if host is not None else []
        vm_name, running = vm.name, vm.status == UP
    return render_template("_hostdev_dialog.html", vm_id=vm_id, vm_name=vm_name, host=host, hosts=hosts,
                           may_pick=may_pick, devices=listed, running=running)


def new_hostdev(vm_id: str) -> Response:
    form = Form()
    device = form.integer("host_device_id")
    form.check()
    if device is None:
        reason = Reason(R.INVALID_FIELD, "host_device_id: pick a host device.", {"field": "host_device_id"})
        raise FormInvalid("The form is not valid: " + reason.message, reasons=[reason])
    required = form.flag("required")
    outcome = run(add_hostdev, vm_id=vm_id, host_device_id=device, required=required)
    text = f"Host device {device} attached ({STARTUP[required]} at start)"
    if outcome.pending:
        return done(text + "; plugging.")
    return done(text + ".", note=_next_start(vm_id))


def _next_start(vm_id: str) -> str | None:
    with sessions()() as s:
        vm = vms_dao.get(s, vm_id)
        return "applied at the VM's next start" if vm is not None and vm.status == DOWN else None


def hostdev_action(vm_id: str, dev_id: str, action: str) -> Response:
    if action == "remove":
        run(remove_hostdev, vm_id=vm_id, hostdev_id=dev_id)
        return done("Host device detached.")
    outcome = run(plug_unplug_hostdev, vm_id=vm_id, hostdev_id=dev_id, plug=action == "activate")
    if outcome.pending:
        return done("Host device deactivating: waiting for the guest to release it." if action == "deactivate"
                    else "Host device plugging.")
    return done(f"Host device {action}d.", note=_next_start(vm_id))


# ---- a host's device inventory ------------------------------------------------------------------------

def host_devices_page(host_id: str) -> str:
    capability = request.args.get("capability") or None
    status = request.args.get("status") or None
    if capability not in (None, *host_devices.CAPABILITIES) or status not in (None, *HOSTDEV_STATUSES):
        abort(400)
    with sessions()() as s:
        host = hosts_dao.get(s, host_id)
        if host is None:
            abort(404)
        found = host_devices.list_for_host(s, host.id, capability=capability, status=status)
        names = _vm_names(s, {d.vm_id for d in found})
        usb_rows = []
        for hd in found:
            if hd.capability != USB:
                continue
            row = _facts(hd, names)
            row.update(name=hd.name, allowed=hd.allowed, bus=hd.bus, device=hd.device)
            usb_rows.append(row)
        pci_found = [hd for hd in found if hd.capability == pci.PCI]
        # The IOMMU groups' holders come from every PCI function of the host, whatever the filter shows.
        whole = host_devices.list_for_host(s, host.id, capability=pci.PCI) if status is not None else pci_found
        pci_rows = pci.inventory_rows(pci_found, whole, names, pci.aliases_by_ids(s)) if pci_found else []
        host_name = host.name
    return render_template("host_devices.html", tab="ui.hosts", host_id=host_id, host_name=host_name,
                           usb=usb_rows, pci=pci_rows, capability=capability, status=status,
                           capabilities=host_devices.CAPABILITIES, statuses=HOSTDEV_STATUSES)


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/vms/<vm_id>/hostdevs/new", "hostdev_new_dialog", hostdev_dialog, methods=["GET"])
    bp.add_url_rule("/vms/<vm_id>/hostdevs", "hostdev_new", new_hostdev, methods=["POST"])
    bp.add_url_rule("/vms/<vm_id>/hostdevs/<dev_id>/<any(activate,deactivate,remove):action>", "hostdev_action",
                    hostdev_action, methods=["POST"])
    bp.add_url_rule("/hosts/<host_id>/devices", "host_devices", host_devices_page)

