"""The REST routes every device kind gets, from one description: /api/vms/{vm_id}/<path> with list and
create, /<id> with get, update (PUT and PATCH, when the kind has an update command) and delete, and
/<id>/activate and /<id>/deactivate (when the kind has a plug command). A kind's module only says
which schemas, view and commands it uses.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import url_for
from flask.views import MethodView
from marshmallow import Schema
from sqlalchemy.orm.exc import DetachedInstanceError

from engine.api.common import Blueprint, read_sessions, run, status_for, visible_vm
from engine.api.schemas import EmptySchema
from engine.dao import devices as devices_dao
from engine.dao.models import VmDevice
from engine.devices import kinds
from engine.devices.kinds import DeviceKind
from engine.errors import NotFound, Reason


@dataclass(frozen=True)
class DeviceRoutes:
    kind: DeviceKind
    path: str                       # "nics"
    id_param: str                   # the commands' id field and the URL's: "nic_id"
    description: str
    view: Callable[[VmDevice], dict[str, Any]]
    schema: type[Schema]
    create_schema: type[Schema]
    add: Any                        # command modules
    remove: Any
    plug: Any = None                # Params(vm_id, <id_param>, plug)
    update: Any = None
    update_schema: type[Schema] | None = None
    add_options: Callable[[], dict[str, Any]] | None = None
    docs: dict[str, str] | None = None

    def doc(self, action: str, default: str) -> str:
        return (self.docs or {}).get(action, default)


def read(routes: DeviceRoutes, vm_id: str, dev_id: str) -> dict[str, Any]:
    with read_sessions()() as s:
        visible_vm(s, vm_id)
        dev = devices_dao.get(s, dev_id, with_nic=routes.kind.type == kinds.NIC.type)
        if dev is None or dev.vm_id != vm_id or dev.type != routes.kind.type:
            raise NotFound(f"{routes.kind.label} {dev_id} of VM {vm_id} does not exist.",
                           reasons=[Reason(routes.kind.audit("NOT_FOUND"), f"{routes.kind.label} {dev_id} does "
                                           "not exist.", {"id": dev_id})])
        return routes.view(dev)


def answer(routes: DeviceRoutes, vm_id: str, dev_id: str, outcome: Any) -> dict[str, Any]:
    """The device as the command left it: the view of the row the command's outcome carries, when
    that row holds all the view reads; else (a relationship the command did not load, a row whose
    last compare-and-set lost and was expired) the device read again."""
    dev = getattr(outcome, "device", None)
    if dev is not None:
        try:
            return routes.view(dev)
        except DetachedInstanceError:
            pass
    return read(routes, vm_id, dev_id)


def read_all(routes: DeviceRoutes, vm_id: str) -> list[dict[str, Any]]:
    with read_sessions()() as s:
        visible_vm(s, vm_id)
        return [routes.view(d) for d in devices_dao.list_for_vm(s, vm_id, type=routes.kind.type)]


def make_blueprint(routes: DeviceRoutes) -> Blueprint:
    label = routes.kind.label
    blp = Blueprint(routes.path, __name__, url_prefix=f"/api/vms/<string:vm_id>/{routes.path}",
                    description=routes.description)
    id_url = f"/<string:{routes.id_param}>"

    def _doc(text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def set_doc(fn: Callable[..., Any]) -> Callable[..., Any]:
            fn.__doc__ = text
            return fn
        return set_doc

    class Collection(MethodView):
        @blp.response(200, routes.schema(many=True))
        @_doc(routes.doc("list", f"List a VM's {label}s"))
        def get(self, vm_id):
            return read_all(routes, vm_id)

        @blp.arguments(routes.create_schema)
        @blp.response(201, routes.schema, headers={"Location": {"schema": {"type": "string"}}})
        @_doc(routes.doc("create", f"Add a {label}"))
        def post(self, data, vm_id):
            options = routes.add_options() if routes.add_options else None
            outcome = run(routes.add, vm_id=vm_id, _options=options, **data)
            location = url_for(f"{routes.path}.ById", vm_id=vm_id, **{routes.id_param: outcome.id})
            return read(routes, vm_id, outcome.id), 201, {"Location": location}

    blp.route("", endpoint="Collection")(Collection)

    class ById(MethodView):
        @blp.response(200, routes.schema)
        @_doc(routes.doc("get", f"Get a {label}"))
        def get(self, vm_id, **ids):
            return read(routes, vm_id, ids[routes.id_param])

        @blp.response(204)
        @_doc(routes.doc("delete", f"Remove a {label}"))
        def delete(self, vm_id, **ids):
            run(routes.remove, vm_id=vm_id, **ids)
            return None

    if routes.update is not None and routes.update_schema is not None:
        def _update(self, data, vm_id, **ids):
            outcome = run(routes.update, vm_id=vm_id, **ids, **data)
            return read(routes, vm_id, ids[routes.id_param]), status_for(outcome)

        text = routes.doc("update", f"Update a {label} (only the fields sent)")
        for method in ("put", "patch"):
            setattr(ById, method, blp.arguments(routes.update_schema)(
                blp.response(200, routes.schema)(_doc(text)(_copy(_update)))))
        ById.methods = {"GET", "DELETE", "PUT", "PATCH"}
    blp.route(id_url, endpoint="ById")(ById)

    if routes.plug is not None:
        for plug, action in ((True, "activate"), (False, "deactivate")):
            blp.route(f"{id_url}/{action}", endpoint=action.capitalize())(_action_view(blp, routes, plug, action))
    return blp


def _copy(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(self, *args, **kw):
        return fn(self, *args, **kw)
    return wrapper


def _action_view(blp: Blueprint, routes: DeviceRoutes, plug: bool, action: str) -> type[MethodView]:
    label = routes.kind.label

    def post(self, _data, vm_id, **ids):
        outcome = run(routes.plug, vm_id=vm_id, plug=plug, **ids)
        return answer(routes, vm_id, ids[routes.id_param], outcome), status_for(outcome)

    post.__doc__ = routes.doc(action, f"{action.capitalize()} ({'plug' if plug else 'unplug'}) a {label}")
    post = blp.response(200, routes.schema)(post)
    if not plug:
        post = blp.alt_response(202, schema=routes.schema,
                                description=f"The guest has not released the {label} yet: plug_state is "
                                            "'unplugging' until the host reports the removal.")(post)
    post = blp.arguments(EmptySchema, required=False)(post)
    return type(f"{action.capitalize()}View", (MethodView,), {"post": post})
