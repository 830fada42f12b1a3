"""The Nova-compatible facade: /v2/<tenant_id>, /v2.1/<tenant_id> and /v3. No business logic: it calls
the same commands as the native API and answers in Nova's bodies, status codes and fault shape.

One blueprint, "nova", holds the version documents (GET /, /v2, /v2.1) and mounts the resources
(flavors, servers, server actions, os-hypervisors, os-pci_attachments) three times: as "nova.v2",
"nova.v2_1" (both with the tenant in the path) and "nova.v3" (without). Every fault under "nova" is
rendered in Nova's shape (engine.nova.shape), through engine.faults like every other front's.
Requests carry a token in X-Auth-Token, as Keystone's travel (engine.app checks it; the version
documents are public); `authorize` then says what a member may do. Not implemented yet: microversions above 2.1
(engine.nova.versions).
"""
from __future__ import annotations

import uuid

from flask import Blueprint, Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from engine import faults
from engine import reasons as R
from engine.auth import Principal
from engine.errors import Forbidden
from engine.nova import flavors, hypervisors, pci_attachments, servers, versions
from engine.nova.shape import nova_shape

NAME = "nova"
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

# ---- who may use which route (engine.app authenticates, then asks `authorize`) --------------------

#: Open to anyone: the version documents, as Nova's are.
PUBLIC_ENDPOINTS = frozenset({f"{NAME}.versions", f"{NAME}.v2", f"{NAME}.v2_slash", f"{NAME}.v21",
                              f"{NAME}.v21_slash"})
#: A member's routes (by endpoint, on every mount): its project's servers, their actions and their PCI
#: devices by alias (os-pci_attachments: an alias is what an admin allowed), reading flavors and their
#: extra specs. Creating, deleting and changing flavors -- and any route added later
#: until it is listed here -- is for admins, as in Nova's default policy.
MEMBER_ENDPOINTS = frozenset({"list_servers", "list_servers_detail", "show_server", "create_server", "delete_server",
                              "server_action", "list_flavors", "list_flavors_detail", "show_flavor", "list_specs",
                              "show_spec", "list_pci_attachments", "create_pci_attachments",
                              "delete_pci_attachment", "unknown"})


def authorize(principal: Principal, endpoint: str, method: str, path: str) -> None:
    """The path's tenant must be one of the principal's projects (any, for an admin), and a member
    may use only the member's routes; else 403 forbidden. (Nova's own API refuses a token acting on
    another project's URL too; a 403 says "authenticated, not allowed" without naming what exists.)"""
    project = g.get("nova_tenant")
    if project is not None and not principal.sees_project(project):
        reason = R.project_not_allowed(project)
        raise Forbidden(reason.message, reasons=[reason])
    if principal.is_admin or endpoint.rpartition(".")[2] in MEMBER_ENDPOINTS:
        return
    reason = R.admin_required(f"{method} {path}")
    raise Forbidden(reason.message, reasons=[reason])


def _pull_tenant(endpoint: str | None, values: dict | None) -> None:
    g.nova_tenant = (values or {}).pop("tenant_id", None)


def _negotiate() -> None:
    if request.blueprint != f"{NAME}.v2":     # legacy v2 has no microversions
        versions.negotiate()


def _unknown(rest: str = ""):
    """Any other path under a mount: 405 when the path exists with other methods, else 404, both in
    Nova's shape (a URL no rule matches would otherwise answer in the native one)."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = set()
    for method in _METHODS:
        try:
            endpoint, _ = adapter.match(request.path, method=method)
        except HTTPException:
            continue
        if endpoint != request.endpoint:
            allowed.add(method)
    if allowed:
        raise MethodNotAllowed(valid_methods=sorted(allowed))
    raise NotFound()


def make_resources(*, root: bool = True) -> Blueprint:
    """Flavors, servers and actions; registered once per mount. `root`: the mount's own path is a
    resource path too (not where a version document answers)."""
    bp = Blueprint("resources", __name__)
    bp.url_value_preprocessor(_pull_tenant)
    bp.before_request(_negotiate)
    bp.after_request(versions.stamp)
    flavors.register(bp)
    servers.register(bp)
    hypervisors.register(bp)
    pci_attachments.register(bp)
    if root:
        bp.add_url_rule("", "unknown", _unknown, methods=_METHODS)
    bp.add_url_rule("/<path:rest>", "unknown", _unknown, methods=_METHODS)
    return bp


#: The request id headers Nova's compute_req_id middleware sends (novaclient keeps them as request_ids).
REQUEST_ID_HEADERS = ("x-openstack-request-id", "x-compute-request-id")


def _send_openstack_request_id(response: Response) -> Response:
    """The engine's request id (X-Request-Id, which follows the request into the agent's log) in
    Nova's spelling too, `req-<uuid>`, on every answer of the facade, faults included."""
    if "request_id" in g:
        try:
            value = f"req-{uuid.UUID(g.request_id)}"
        except ValueError:          # a client's own id, kept as it came
            value = f"req-{g.request_id}"
        for header in REQUEST_ID_HEADERS:
            response.headers[header] = value
    return response


def make_blueprint() -> Blueprint:
    bp = Blueprint(NAME, __name__)
    bp.after_request(_send_openstack_request_id)
    bp.add_url_rule("/", "versions", versions.versions)
    for path in ("/v2", "/v2/"):
        bp.add_url_rule(path, "v2" if path == "/v2" else "v2_slash", versions.v2)
    for path in ("/v2.1", "/v2.1/"):
        bp.add_url_rule(path, "v21" if path == "/v2.1" else "v21_slash", versions.v21)
    resources = make_resources()
    bp.register_blueprint(resources, url_prefix="/v2/<tenant_id>", name="v2")
    bp.register_blueprint(resources, url_prefix="/v2.1/<tenant_id>", name="v2_1")
    # Nova routes every path with and without the project id: an endpoint without one (a catalog's
    # http://host/v2.1) acts on the token's projects, as /v3 does.
    bp.register_blueprint(make_resources(root=False), url_prefix="/v2.1", name="v2_1_bare")
    bp.register_blueprint(resources, url_prefix="/v3", name="v3")
    return bp


def init_app(app: Flask) -> None:
    """Mount the facade and answer its faults in Nova's shape."""
    app.register_blueprint(make_blueprint())
    faults.register_shape(app, NAME, nova_shape)
