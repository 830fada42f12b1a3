"""The VMs main tab: every VM the principal sees (name, status, guest OS, host, project, memory), a
filter box, Run and Stop (gated by the engine's canDo), and New VM from a flavor or by hand."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request, url_for
from werkzeug.wrappers import Response

from engine import osinfo
from engine.commands import add_vm, common, remove_vm, run_vm, stop_vm
from engine.dao import accounts, hosts as hosts_dao
from engine.ui import gating, live
from engine.ui.actions import done
from engine.ui.context import principal, run, sessions
from engine.ui.forms import Form, pick
from engine.ui.views import VM_MOVING, vm_row
from engine.vocab import MACHINES


def _matches(row: dict[str, Any], q: str) -> bool:
    q = q.lower()
    return any(q in str(row[k]).lower() for k in ("name", "status", "os", "host", "project"))


def rows(q: str = "") -> list[dict[str, Any]]:
    who = principal()
    with sessions()() as s:
        host_names = {h.id: h.name for h in hosts_dao.list(s)}
        found = [vm_row(vm, host_names) for vm in common.list_vms(s, who)]
    return [r for r in found if not q or _matches(r, q)]


def _table() -> Response | str:
    q = (request.args.get("q") or "").strip()
    found = rows(q)
    gates = {r["id"]: gating.for_vm(r["id"]) for r in found}
    inner = render_template("_vms_table.html", rows=found, gates=gates, q=q)
    busy = any(r["status"] in VM_MOVING for r in found)
    return live.region("vms-live", url_for("ui.vms_table"), inner, busy=busy, include="#vm-filter")


def vms_page() -> str:
    who = principal()
    with sessions()() as s:
        flavors = [{"id": f.id, "name": f.name, "memory_mb": f.memory_mb, "vcpus": f.vcpus}
                   for f in common.list_flavors(s, who)]
        projects = sorted({p.id for p in accounts.list_projects(s)} if who.is_admin else who.projects)
    return render_template("vms.html", tab="ui.vms", table=_table(), flavors=flavors, projects=projects,
                           oses=osinfo.all(), machines=MACHINES, q=request.args.get("q") or "")


def new_vm() -> Response:
    form = Form()
    params = pick(name=form.text("name", ""), os_type=form.text("os_type"), memory_mb=form.integer("memory_mb"),
                  vcpus=form.integer("vcpus"), machine=form.text("machine"), project_id=form.text("project_id"),
                  flavor_id=form.text("flavor_id"))
    boot = pick(kernel=form.text("kernel"), initrd=form.text("initrd"), cmdline=form.text("cmdline"),
                serialLog=form.text("serial_log"))
    form.check()
    if boot:
        params["boot"] = boot
    if "project_id" not in params and principal().home_project is not None:
        params["project_id"] = principal().home_project
    run(add_vm, **params)
    return done(f"VM {params['name']} created (down).")


def start(vm_id: str) -> Response:
    outcome = run(run_vm, vm_id=vm_id)
    return done("VM starting." if outcome.pending else "VM started.")


def stop(vm_id: str) -> Response:
    outcome = run(stop_vm, vm_id=vm_id)
    return done("VM stopping." if outcome.pending else "VM stopped.")


def remove(vm_id: str) -> Response:
    run(remove_vm, vm_id=vm_id)
    resp = done("VM removed.")
    if request.headers.get("HX-Current-URL", "").rstrip("/").endswith(vm_id) or "/vms/" in request.headers.get(
            "HX-Current-URL", ""):
        resp.headers["HX-Redirect"] = url_for("ui.vms")
    return resp


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/vms", "vms", vms_page, methods=["GET"])
    bp.add_url_rule("/vms/table", "vms_table", _table, methods=["GET"])
    bp.add_url_rule("/vms", "new_vm", new_vm, methods=["POST"])
    bp.add_url_rule("/vms/<vm_id>/start", "start_vm", start, methods=["POST"])
    bp.add_url_rule("/vms/<vm_id>/stop", "stop_vm", stop, methods=["POST"])
    bp.add_url_rule("/vms/<vm_id>/remove", "remove_vm", remove, methods=["POST"])
