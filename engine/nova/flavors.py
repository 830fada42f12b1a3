"""Nova's flavors and os-extra_specs: list (summary and detail), show, create, delete; extra specs
listed, shown, created or updated (merged), updated one key, deleted one key. The commands validate
and store; this module checks Nova's body syntax and answers in Nova's bodies and status codes.

Plugboard flavors have no swap or ephemeral disk and no RX/TX factor: a create may give Nova's
defaults for them (novaclient always sends them) and nothing else."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, request

from engine.commands import add_flavor, common, remove_flavor, set_flavor_specs
from engine.commands.flavor_common import flavor_not_found, spec_not_set
from engine.dao.models import Flavor
from engine.errors import BadRequest, NotFound
from engine.dao import flavors as flavors_dao
from engine.nova.common import Checker, json_body, link, principal, run, sessions
from engine.nova.views import flavor_detail, flavor_summary

CREATE_FIELDS = ("name", "ram", "vcpus", "disk", "id", "swap", "OS-FLV-EXT-DATA:ephemeral", "rxtx_factor",
                 "os-flavor-access:is_public")


def _load(s: Any, flavor_id: str) -> Flavor:
    flavor = common.load_flavor(s, principal(), flavor_id)
    if flavor is None:
        reason = flavor_not_found(flavor_id)
        raise NotFound(reason.message, reasons=[reason])
    return flavor


def _specs(flavor_id: str) -> dict[str, str]:
    with sessions()() as s:
        return dict(_load(s, flavor_id).extra_specs or {})


def _create_params(body: dict[str, Any]) -> dict[str, Any]:
    c = Checker()
    flavor = c.object(body.get("flavor"), "flavor", allowed=CREATE_FIELDS, required=("name", "ram", "vcpus", "disk"))
    c.object(body, "", allowed=("flavor",))
    params: dict[str, Any] = {
        "name": c.string(flavor.get("name"), "flavor.name") if "name" in flavor else None,
        "memory_mb": c.integer(flavor.get("ram"), "flavor.ram", minimum=1) if "ram" in flavor else None,
        "vcpus": c.integer(flavor.get("vcpus"), "flavor.vcpus", minimum=1) if "vcpus" in flavor else None,
        "disk_gb": c.integer(flavor.get("disk"), "flavor.disk") if "disk" in flavor else None,
    }
    flavor_id = flavor.get("id")
    if flavor_id is not None:
        params["flavor_id"] = str(flavor_id) if isinstance(flavor_id, int) and not isinstance(flavor_id, bool) \
            else c.string(flavor_id, "flavor.id")
    if "os-flavor-access:is_public" in flavor:
        params["is_public"] = c.boolean(flavor["os-flavor-access:is_public"], "flavor.os-flavor-access:is_public")
    swap = flavor.get("swap", 0)
    if swap not in (0, "", "0") or isinstance(swap, bool):
        c.bad("flavor.swap", swap, "Plugboard flavors have no swap disk: 0")
    ephemeral = flavor.get("OS-FLV-EXT-DATA:ephemeral", 0)
    if ephemeral not in (0, "0") or isinstance(ephemeral, bool):
        c.bad("flavor.OS-FLV-EXT-DATA:ephemeral", ephemeral, "Plugboard flavors have no ephemeral disk: 0")
    rxtx = flavor.get("rxtx_factor", 1.0)
    if isinstance(rxtx, bool) or rxtx not in (1, 1.0, "1", "1.0"):
        c.bad("flavor.rxtx_factor", rxtx, "Plugboard flavors have no RX/TX factor: 1.0")
    c.done()
    return params


def _specs_body(body: dict[str, Any]) -> dict[str, Any]:
    c = Checker()
    c.object(body, "", allowed=("extra_specs",), required=("extra_specs",))
    specs = c.metadata(body.get("extra_specs", {}), "extra_specs", numbers=True)
    c.done()
    return specs


def register(bp: Blueprint) -> None:
    @bp.get("/flavors")
    def list_flavors():
        return _listed("flavors", flavor_summary)

    @bp.get("/flavors/detail")
    def list_flavors_detail():
        return _listed("flavors/detail", flavor_detail)

    @bp.get("/flavors/<string:flavor_id>")
    def show_flavor(flavor_id: str):
        with sessions()() as s:
            return {"flavor": flavor_detail(_load(s, flavor_id))}

    @bp.post("/flavors")
    def create_flavor():
        outcome = run(add_flavor, **_create_params(json_body()))
        with sessions()() as s:
            return {"flavor": flavor_detail(_load(s, outcome.id))}

    @bp.delete("/flavors/<string:flavor_id>")
    def delete_flavor(flavor_id: str):
        run(remove_flavor, flavor_id=flavor_id)
        return "", 202

    @bp.get("/flavors/<string:flavor_id>/os-extra_specs")
    def list_specs(flavor_id: str):
        return {"extra_specs": _specs(flavor_id)}

    @bp.post("/flavors/<string:flavor_id>/os-extra_specs")
    def create_specs(flavor_id: str):
        specs = _specs_body(json_body())
        run(set_flavor_specs, flavor_id=flavor_id, specs=specs)
        stored = _specs(flavor_id)
        return {"extra_specs": {key: stored[key] for key in specs if key in stored}}

    @bp.get("/flavors/<string:flavor_id>/os-extra_specs/<string:key>")
    def show_spec(flavor_id: str, key: str):
        specs = _specs(flavor_id)
        if key not in specs:
            reason = spec_not_set(flavor_id, key)
            raise NotFound(reason.message, reasons=[reason])
        return {key: specs[key]}

    @bp.put("/flavors/<string:flavor_id>/os-extra_specs/<string:key>")
    def update_spec(flavor_id: str, key: str):
        body = json_body()
        if len(body) > 1:
            raise BadRequest("Request body contains too many items.")
        if key not in body:
            raise BadRequest("Request body and URI mismatch.")
        specs = _specs_body({"extra_specs": body})
        run(set_flavor_specs, flavor_id=flavor_id, specs=specs)
        return {key: _specs(flavor_id)[key]}

    @bp.delete("/flavors/<string:flavor_id>/os-extra_specs/<string:key>")
    def delete_spec(flavor_id: str, key: str):
        run(set_flavor_specs, flavor_id=flavor_id, unset=(key,))
        return "", 200


#: Nova's flavor sort keys that Plugboard flavors have, and the columns they sort by.
SORT_KEYS = {"flavorid": "id", "id": "id", "name": "name", "memory_mb": "memory_mb", "vcpus": "vcpus",
             "root_gb": "disk_gb", "created_at": "created_at", "is_public": "is_public"}


def _listed(path: str, view: Callable[[Flavor], dict[str, Any]]) -> dict[str, Any]:
    """Nova's flavor listing: the minRam and minDisk filters, `sort_key` and `sort_dir` (without a
    sort key: smallest first, then by name), an admin's `is_public` (true, the default as in Nova and
    novaclient, which sends it only when it is not; false; or none: every flavor -- others see the
    public ones whatever they ask), and
    pages: `limit` (at most PAGE_MAX) and `marker` (the previous page's last flavor), a full page
    linking to the next in `flavors_links`. Other query parameters are ignored, as Nova 2.1 does."""
    c = Checker()
    args = request.args
    min_ram = c.integer(args["minRam"], "minRam") if "minRam" in args else None
    min_disk = c.integer(args["minDisk"], "minDisk") if "minDisk" in args else None
    asked = c.integer(args["limit"], "limit") if "limit" in args else None
    sort_key, sort_dir = args.get("sort_key"), args.get("sort_dir", "asc")
    if sort_key is not None and sort_key not in SORT_KEYS:
        c.bad("sort_key", sort_key, f"Must be one of {', '.join(SORT_KEYS)}")
    if sort_dir not in ("asc", "desc"):
        c.bad("sort_dir", sort_dir, "Must be asc or desc")
    given = args.get("is_public", "true")
    public = None if given.lower() == "none" else c.boolean(given, "is_public")
    c.done()
    limit = min(flavors_dao.PAGE_MAX if asked is None else asked, flavors_dao.PAGE_MAX)
    order = (SORT_KEYS[sort_key],) if sort_key is not None else flavors_dao.BY_SIZE
    marker = args.get("marker")
    with sessions()() as s:
        after = common.load_flavor(s, principal(), marker) if marker is not None else None
        if marker is not None and after is None:
            raise BadRequest(f"marker [{marker}] not found")
        page = list(common.list_flavors(s, principal(), min_memory_mb=min_ram, min_disk_gb=min_disk,
                                        public=public, order=order, descending=sort_dir == "desc",
                                        after=after, limit=limit))
        body: dict[str, Any] = {"flavors": [view(f) for f in page]}
    if page and len(page) == limit:
        query = urlencode({**args, "limit": limit, "marker": page[-1].id})
        body["flavors_links"] = [{"rel": "next", "href": f"{link(path)}?{query}"}]
    return body
