"""Nova's servers: list (summary and detail), show, create, delete, and actions (engine.nova.actions).

A server is a VM of the path's tenant (its project); another tenant's server is itemNotFound. Create
defines the VM from `flavorRef` (its size and the devices of its extra specs) with the request's
name and metadata, and answers 202 with the server SHUTOFF: Plugboard has no images to boot, and a
VM's devices are set up at its first start, so `os-start` boots it. Delete removes a SHUTOFF server
(409 otherwise: `os-stop` first). `imageRef` is accepted and not used."""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import regex
from flask import Blueprint, request

from engine import reasons as R
from engine.commands import add_vm, common, remove_vm
from engine.dao import vms as vms_dao
from engine.dao.models import Vm
from engine.nova import actions
from engine.errors import BadRequest, NotFound, ValidationFailed
from engine.nova.common import (Checker, json_body, link, principal, project_for_new_server, run, sessions, tenant,
                                 visible)
from engine.nova.views import server_created, server_detail, server_status, server_summary

CREATE_FIELDS = ("name", "flavorRef", "imageRef", "metadata", "min_count", "max_count", "networks")
# A flavorRef is an id or a link whose last segment is the id.
FLAVOR_REF_RE = re.compile(r"^(?:.*/)?([^/]+)/?\Z")


def _create_params(body: dict[str, Any]) -> dict[str, Any]:
    c = Checker()
    c.object(body, "", allowed=("server",), required=("server",))
    server = c.object(body.get("server", {}), "server", allowed=CREATE_FIELDS, required=("name", "flavorRef"))
    params: dict[str, Any] = {"project_id": project_for_new_server()}
    if "name" in server:
        params["name"] = c.string(server["name"], "server.name")
    ref = server.get("flavorRef")
    if "flavorRef" in server:
        text = str(ref) if isinstance(ref, int) and not isinstance(ref, bool) else c.string(ref, "server.flavorRef")
        match = FLAVOR_REF_RE.match(text or "")
        if text is not None and match is None:
            c.bad("server.flavorRef", ref, "Must be a flavor id or link")
        params["flavor_id"] = match.group(1) if match else None
    if "imageRef" in server:
        c.string(server["imageRef"], "server.imageRef", allow_empty=True)
    if "metadata" in server:
        params["meta"] = c.metadata(server["metadata"], "server.metadata")
    for count in ("min_count", "max_count"):
        if count in server and c.integer(server[count], f"server.{count}", minimum=1) not in (None, 1):
            c.bad(f"server.{count}", server[count], "Plugboard creates one server per request: 1")
    networks = server.get("networks", "none")
    if networks not in ("none", "auto", []):
        c.bad("server.networks", networks, 'NICs are added through the native API: "none", "auto" or []')
    c.done()
    return params


#: What matching the `name` filter may take, over the whole listing.
NAME_FILTER_SECONDS = 1.0


def _filter(c: Checker) -> Callable[[Vm], bool] | None:
    """Nova's `name` (a regular expression searched in the name) and `status` (a Nova status, ACTIVE,
    SHUTOFF, ...: an unknown one matches nothing, as at 2.1) filters; other query parameters are
    ignored, as Nova ignores them for a project's user. None when neither is given. A pattern whose
    matching outlasts NAME_FILTER_SECONDS is a 400."""
    name, status = request.args.get("name"), request.args.get("status")
    if name is None and status is None:
        return None
    pattern = None
    if name is not None:
        try:
            pattern = regex.compile(name)
        except regex.error:
            c.bad("name", name, "Must be a regular expression")
    wanted = None if status is None else status.upper()
    deadline = time.monotonic() + NAME_FILTER_SECONDS

    def named(v: Vm) -> bool:
        try:
            return pattern is None or pattern.search(v.name, timeout=max(0.001, deadline - time.monotonic())) \
                is not None
        except TimeoutError:
            raise BadRequest(f"Invalid input for field/attribute name. Value: {name!r}. The regular expression "
                             f"takes longer than {NAME_FILTER_SECONDS:g} s to match.") from None

    return lambda v: named(v) and (wanted is None or server_status(v) == wanted)


def _page(path: str, view: Callable[[Vm], dict[str, Any]]) -> dict[str, Any]:
    """A page of the servers the caller sees (the path's tenant's; on /v3 every project's), by name:
    Nova's `name` and `status` filters, `limit` (more than PAGE_MAX is cut to it, as Nova does) and
    `marker` (the last server of the previous page). A full page links to the next in
    `servers_links`. Filtered, the page is cut from the matching servers after the filter, so that
    a page counts only matches."""
    c = Checker()
    asked = c.integer(request.args["limit"], "limit") if "limit" in request.args else None
    keep = _filter(c)
    c.done()
    limit = min(vms_dao.PAGE_MAX if asked is None else asked, vms_dao.PAGE_MAX)
    marker = request.args.get("marker")
    with sessions()() as s:
        try:
            if keep is None:
                page = common.list_vms(s, principal(), project_id=tenant(), marker=marker, limit=limit)
            else:
                after = common.load_vm(s, principal(), marker).name if marker is not None else None
                matching = [v for v in common.list_vms(s, principal(), project_id=tenant()) if keep(v)]
                page = [v for v in matching if after is None or v.name > after][:limit]
        except NotFound:
            raise BadRequest(f"marker [{marker}] not found") from None
        body: dict[str, Any] = {"servers": [view(v) for v in page]}
    if page and len(page) == limit:
        query = urlencode({**request.args, "limit": limit, "marker": page[-1].id})
        body["servers_links"] = [{"rel": "next", "href": f"{link(path)}?{query}"}]
    return body


def register(bp: Blueprint) -> None:
    @bp.get("/servers")
    def list_servers():
        return _page("servers", server_summary)

    @bp.get("/servers/detail")
    def list_servers_detail():
        admin = principal().is_admin
        return _page("servers/detail", lambda v: server_detail(v, admin=admin))

    @bp.get("/servers/<string:server_id>")
    def show_server(server_id: str):
        with sessions()() as s:
            return {"server": server_detail(visible(s, server_id), admin=principal().is_admin)}

    @bp.post("/servers")
    def create_server():
        try:
            outcome = run(add_vm, **_create_params(json_body()))
        except ValidationFailed as err:
            # Nova answers a create whose values it refuses (an unknown flavor, a size out of range)
            # 400; a name another server has is Plugboard's own rule (domain names are unique) and
            # stays a conflict.
            if any(r.code == R.NAME_IN_USE for r in err.reasons):
                raise
            raise BadRequest(err.message, reasons=err.reasons) from err
        with sessions()() as s:
            vm = visible(s, outcome.id)
            return {"server": server_created(vm)}, 202, {"Location": link("servers", vm.id)}

    @bp.delete("/servers/<string:server_id>")
    def delete_server(server_id: str):
        with sessions()() as s:
            visible(s, server_id)
        run(remove_vm, vm_id=server_id)
        return "", 204

    @bp.post("/servers/<string:server_id>/action")
    def server_action(server_id: str):
        actions.dispatch(server_id, json_body())
        return "", 202
