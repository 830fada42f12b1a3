"""The admin's pages: Hosts (status, capabilities, networks, VMs on each; maintenance, activate, remove)
and Flavors (size and extra specs). Members are refused before the view runs (engine.ui.authorize)."""
from __future__ import annotations

from flask import Blueprint, render_template, url_for
from werkzeug.wrappers import Response

from engine.commands import activate_host, fence_host, host_maintenance, remove_host
from engine.dao import flavors as flavors_dao, hosts as hosts_dao
from engine.ui import gating, live
from engine.ui.actions import done
from engine.ui.context import run, sessions
from engine.ui.views import host_row
from engine.vocab import FENCE_MANUAL, RUNNING_STATUSES

ENDPOINTS = ("hosts", "hosts_table", "host_maintenance", "host_activate", "host_fence", "host_remove", "flavors")


def _table() -> Response | str:
    with sessions()() as s:
        hosts = list(hosts_dao.list(s))
        counts = hosts_dao.running_vm_counts(s, [h.id for h in hosts], RUNNING_STATUSES)
        rows = [host_row(h, counts.get(h.id, 0)) for h in hosts]
        gates = gating.for_hosts(s, hosts)
    inner = render_template("_hosts_table.html", hosts=rows, gates=gates)
    return live.region("hosts-live", url_for("ui.hosts_table"), inner, busy=False)


def hosts_page() -> str:
    return render_template("hosts.html", tab="ui.hosts", table=_table())


def maintenance(host_id: str) -> Response:
    run(host_maintenance, host_id=host_id)
    return done("Host in maintenance: no VM starts there until it is activated.")


def activate(host_id: str) -> Response:
    run(activate_host, host_id=host_id)
    return done("Host activated.")


def fence(host_id: str) -> Response:
    run(fence_host, host_id=host_id, fence_type=FENCE_MANUAL)
    return done("Host confirmed rebooted: its VMs are marked down.")


def remove(host_id: str) -> Response:
    run(remove_host, host_id=host_id)
    return done("Host removed.")


def flavors_page() -> str:
    with sessions()() as s:
        rows = [{"id": f.id, "name": f.name, "memory_mb": f.memory_mb, "vcpus": f.vcpus, "disk_gb": f.disk_gb,
                 "public": f.is_public, "extra_specs": dict(f.extra_specs or {})} for f in flavors_dao.list(s)]
    return render_template("flavors.html", tab="ui.flavors", flavors=rows)


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/hosts", "hosts", hosts_page)
    bp.add_url_rule("/hosts/table", "hosts_table", _table)
    bp.add_url_rule("/hosts/<host_id>/maintenance", "host_maintenance", maintenance, methods=["POST"])
    bp.add_url_rule("/hosts/<host_id>/activate", "host_activate", activate, methods=["POST"])
    bp.add_url_rule("/hosts/<host_id>/fence", "host_fence", fence, methods=["POST"])
    bp.add_url_rule("/hosts/<host_id>/remove", "host_remove", remove, methods=["POST"])
    bp.add_url_rule("/flavors", "flavors", flavors_page)
