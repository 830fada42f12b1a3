"""A VM's page and its sub-tabs: General; NICs (seed 004: a status icon column, Activate and Deactivate,
New NIC with "Activate" checked by default, Edit, Remove); USB controllers (cold plug only); USB
redirection; Host devices (USB, engine.ui.hostdevs); PCI devices (attached by alias, engine.ui.pci);
Events (the VM's audit log, newest first). Each tab's table is a live region; every button is gated
by the engine's canDo and every action runs the command the REST API runs."""
from __future__ import annotations

from collections import deque
from typing import Any

from flask import Blueprint, abort, redirect, render_template, url_for
from werkzeug.wrappers import Response

from engine import usb
from engine.commands import (add_controller, add_nic, add_redirdev, plug_unplug_nic, plug_unplug_redirdev,
                             remove_controller, remove_nic, remove_redirdev, update_nic)
from engine.commands.common import load_vm
from engine.dao import audit as audit_dao, devices as devices_dao, hosts as hosts_dao, vms as vms_dao
from engine.devices import kinds
from engine.ui import gating, hostdevs, live, pci
from engine.ui.actions import done
from engine.ui.context import principal, run, sessions
from engine.ui.forms import Form, pick
from engine.ui.views import VM_MOVING, device_row, event_row, vm_row
from engine.vocab import DOWN, NIC_MODELS

TABS = (("general", "General"), ("nics", "Network interfaces"), ("controllers", "USB controllers"),
        ("redirdevs", "USB redirection"), ("hostdevs", "Host devices"), ("pcidevs", "PCI devices"),
        ("events", "Events"))
TAB_NAMES = "general,nics,controllers,redirdevs,hostdevs,pcidevs,events"
KIND_OF_TAB = {"nics": kinds.NIC, "controllers": kinds.CONTROLLER, "redirdevs": kinds.REDIRDEV,
               "hostdevs": kinds.HOSTDEV, "pcidevs": kinds.HOSTDEV}
EVENTS_SHOWN = 200
#: The controller models offered in the add dialog (the short names first, as the seed writes them).
CONTROLLER_MODELS = tuple(usb.SHORT_NAMES) + tuple(m for m in usb.MODELS if m not in usb.SHORT_NAMES.values()
                                                   and m not in usb.COMPANION_MODELS and m != usb.NONE)


def _snapshot(vm_id: str, tab: str) -> dict[str, Any]:
    """The VM and what the tab lists, read in one session (another project's VM: 404)."""
    with sessions()() as s:
        vm = load_vm(s, principal(), vm_id)
        host_names = {h.id: h.name for h in hosts_dao.list(s)}
        out: dict[str, Any] = {"vm": vm_row(vm, host_names), "devices": [], "events": []}
        kind = KIND_OF_TAB.get(tab)
        if kind is not None:
            listed = [d for d in devices_dao.list_for_vm(s, vm.id, type=kind.type) if _on_tab(d, tab)]
            out["devices"] = [device_row(d, vm) for d in listed]
            if tab == "hostdevs":
                hostdevs.host_device_rows(s, out["devices"], listed)
            if tab == "pcidevs":
                pci.attachment_rows(s, out["devices"], listed)
                out["pci"] = pci.tab_facts(s, vm)
        if tab == "nics":
            out["devices"].sort(key=lambda d: d.get("name", ""))
        if tab == "general":
            out["counts"] = {k: sum(1 for d in vm.devices if d.type == kinds_.type and _on_tab(d, k))
                             for k, kinds_ in KIND_OF_TAB.items()}
            out["extra"] = {"vcpus": vm.vcpus, "machine": vm.machine, "graphics": vm.graphics,
                            "boot": vm.boot or {}, "flavor": vm.flavor, "cluster": vm.cluster_id}
        if tab == "events":
            out["events"] = [event_row(e) for e in reversed(_last_events(s, vm.id))]
    return out


def _on_tab(dev: Any, tab: str) -> bool:
    """Host devices are listed on two tabs: PCI functions on PCI devices, the others on Host devices."""
    if tab == "pcidevs":
        return pci.is_pci(dev)
    if tab == "hostdevs":
        return not pci.is_pci(dev)
    return True


def _last_events(s: Any, vm_id: str) -> list[Any]:
    """The VM's last EVENTS_SHOWN events (the dao pages oldest first)."""
    kept: deque[Any] = deque(maxlen=EVENTS_SHOWN)
    after = 0
    while True:
        page = audit_dao.list(s, vm_id=vm_id, after_id=after, limit=audit_dao.MAX_LIMIT)
        kept.extend(page)
        if len(page) < audit_dao.MAX_LIMIT:
            return list(kept)
        after = page[-1].id


def _region(vm_id: str, tab: str) -> Response | str:
    if tab not in dict(TABS):
        abort(404)
    data = _snapshot(vm_id, tab)
    gates = gating.for_vm(vm_id)
    inner = render_template(f"_tab_{tab}.html", gates=gates, tab=tab, **data)
    busy = data["vm"]["status"] in VM_MOVING or any(d["in_flight"] for d in data["devices"])
    return live.region("tab-live", url_for("ui.vm_tab_live", vm_id=vm_id, tab=tab), inner, busy=busy)


def vm_tab(vm_id: str, tab: str) -> str:
    region = _region(vm_id, tab)
    with sessions()() as s:
        name = load_vm(s, principal(), vm_id).name
    return render_template("vm.html", tab="ui.vms", vm_id=vm_id, vm_name=name, tabs=TABS, current=tab,
                           region=region)


# ---- NICs ---------------------------------------------------------------------------------------

def nic_dialog(vm_id: str, nic_id: str | None = None) -> str:
    gates = gating.for_vm(vm_id)
    nic = None
    with sessions()() as s:
        vm = load_vm(s, principal(), vm_id)
        if nic_id is not None:
            dev = devices_dao.get(s, nic_id)
            if dev is None or dev.vm_id != vm.id or dev.nic is None:
                abort(404)
            nic = device_row(dev, vm)
        host = hosts_dao.get(s, vm.run_on_host) if vm.run_on_host else None
        networks = sorted(set((host.capabilities or {}).get("networks") or {}) |
                          set((host.capabilities or {}).get("bridges") or {})) if host else []
        vm_name = vm.name
    return render_template("_nic_dialog.html", vm_id=vm_id, vm_name=vm_name, nic=nic, gates=gates,
                           models=NIC_MODELS, networks=networks)


def new_nic(vm_id: str) -> Response:
    form = Form()
    params = pick(name=form.text("name", ""), network=form.text("network", ""), model=form.text("model"),
                  mac=form.text("mac"), linked=form.flag("linked"), active=form.flag("active"))
    form.check()
    outcome = run(add_nic, vm_id=vm_id, **params)
    return done(f"NIC {params['name']} added" + (", activated" if params["active"] else ", deactivated") + ".",
                note=_next_start(vm_id) if params["active"] else None) if not outcome.pending else \
        done(f"NIC {params['name']} added; plugging.")


def edit_nic(vm_id: str, nic_id: str) -> Response:
    form = Form()
    params = pick(name=form.text("name"), network=form.text("network"), model=form.text("model"),
                  mac=form.text("mac"), linked=form.flag("linked"))
    form.check()
    run(update_nic, vm_id=vm_id, nic_id=nic_id, **params)
    return done("NIC updated.")


def _next_start(vm_id: str) -> str | None:
    with sessions()() as s:
        vm = vms_dao.get(s, vm_id)
        return "applied at the VM's next start" if vm is not None and vm.status == DOWN else None


def _plug(command: Any, id_field: str, label: str, vm_id: str, dev_id: str, plug: bool) -> Response:
    outcome = run(command, vm_id=vm_id, plug=plug, **{id_field: dev_id})
    verb = "activated" if plug else "deactivated"
    if outcome.pending:
        return done(f"{label} deactivating: waiting for the guest to release it.")
    return done(f"{label} {verb}.", note=_next_start(vm_id))


def nic_action(vm_id: str, nic_id: str, action: str) -> Response:
    if action == "remove":
        run(remove_nic, vm_id=vm_id, nic_id=nic_id)
        return done("NIC removed.")
    if action not in ("activate", "deactivate"):
        abort(404)
    return _plug(plug_unplug_nic, "nic_id", "NIC", vm_id, nic_id, action == "activate")


# ---- USB controllers and redirection --------------------------------------------------------------

def controller_dialog(vm_id: str) -> str:
    gates = gating.for_vm(vm_id)
    return render_template("_controller_dialog.html", vm_id=vm_id, gates=gates, models=CONTROLLER_MODELS)


def new_controller(vm_id: str) -> Response:
    form = Form()
    params = pick(model=form.text("model", ""), count=form.integer("count", 1), companions=form.flag("companions"))
    form.check()
    outcome = run(add_controller, vm_id=vm_id, **params)
    return done(f"{len(outcome.ids) or 1} USB controller(s) added", note="applied at the VM's next start")


def controller_action(vm_id: str, dev_id: str) -> Response:
    run(remove_controller, vm_id=vm_id, controller_id=dev_id)
    return done("USB controller removed.", note="applied at the VM's next start")


def redirdev_dialog(vm_id: str) -> str:
    gates = gating.for_vm(vm_id)
    return render_template("_redirdev_dialog.html", vm_id=vm_id, gates=gates)


def new_redirdev(vm_id: str) -> Response:
    form = Form()
    params = pick(type=form.text("type", "spicevmc"), host=form.text("host"), port=form.integer("port"),
                  mode=form.text("mode"), active=form.flag("active"))
    form.check()
    outcome = run(add_redirdev, vm_id=vm_id, **params)
    return done("USB redirection device added" + ("; plugging." if outcome.pending else "."),
                note=_next_start(vm_id) if params["active"] else None)


def redirdev_action(vm_id: str, dev_id: str, action: str) -> Response:
    if action == "remove":
        run(remove_redirdev, vm_id=vm_id, redirdev_id=dev_id)
        return done("USB redirection device removed.")
    if action not in ("activate", "deactivate"):
        abort(404)
    return _plug(plug_unplug_redirdev, "redirdev_id", "USB redirection device", vm_id, dev_id,
                 action == "activate")


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/vms/<vm_id>", "vm", lambda vm_id: redirect(url_for("ui.vm_tab", vm_id=vm_id, tab="general")))
    bp.add_url_rule(f"/vms/<vm_id>/<any({TAB_NAMES}):tab>", "vm_tab", vm_tab)
    bp.add_url_rule(f"/vms/<vm_id>/<any({TAB_NAMES}):tab>/live", "vm_tab_live", _region)
    bp.add_url_rule("/vms/<vm_id>/nics/new", "nic_new_dialog", nic_dialog, methods=["GET"])
    bp.add_url_rule("/vms/<vm_id>/nics", "nic_new", new_nic, methods=["POST"])
    bp.add_url_rule("/vms/<vm_id>/nics/<nic_id>/edit", "nic_edit_dialog", nic_dialog, methods=["GET"])
    bp.add_url_rule("/vms/<vm_id>/nics/<nic_id>/edit", "nic_edit", edit_nic, methods=["POST"])
    bp.add_url_rule("/vms/<vm_id>/nics/<nic_id>/<any(activate,deactivate,remove):action>", "nic_action",
                    nic_action, methods=["POST"])
    bp.add_url_rule("/vms/<vm_id>/controllers/new", "controller_new_dialog", controller_dialog, methods=["GET"])
    bp.add_url_rule("/vms/<vm_id>/controllers", "controller_new", new_controller, methods=["POST"])
    bp.add_url_rule("/vms/<vm_id>/controllers/<dev_id>/remove", "controller_remove", controller_action,
                    methods=["POST"])
    bp.add_url_rule("/vms/<vm_id>/redirdevs/new", "redirdev_new_dialog", redirdev_dialog, methods=["GET"])
    bp.add_url_rule("/vms/<vm_id>/redirdevs", "redirdev_new", new_redirdev, methods=["POST"])
    bp.add_url_rule("/vms/<vm_id>/redirdevs/<dev_id>/<any(activate,deactivate,remove):action>", "redirdev_action",
                    redirdev_action, methods=["POST"])
