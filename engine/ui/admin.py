"""The admin's pages: Hosts (status, capabilities, networks, VMs on each) and Flavors (size and extra
specs). Members are refused before the view runs (engine.ui.authorize)."""
from __future__ import annotations

from flask import Blueprint, render_template

from engine.dao import flavors as flavors_dao, hosts as hosts_dao
from engine.ui.context import sessions
from engine.ui.views import host_row
from engine.vocab import RUNNING_STATUSES

ENDPOINTS = ("hosts", "flavors")


def hosts_page() -> str:
    with sessions()() as s:
        hosts = list(hosts_dao.list(s))
        counts = hosts_dao.running_vm_counts(s, [h.id for h in hosts], RUNNING_STATUSES)
        rows = [host_row(h, counts.get(h.id, 0)) for h in hosts]
    return render_template("hosts.html", tab="ui.hosts", hosts=rows)


def flavors_page() -> str:
    with sessions()() as s:
        rows = [{"id": f.id, "name": f.name, "memory_mb": f.memory_mb, "vcpus": f.vcpus, "disk_gb": f.disk_gb,
                 "public": f.is_public, "extra_specs": dict(f.extra_specs or {})} for f in flavors_dao.list(s)]
    return render_template("flavors.html", tab="ui.flavors", flavors=rows)


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/hosts", "hosts", hosts_page)
    bp.add_url_rule("/flavors", "flavors", flavors_page)
