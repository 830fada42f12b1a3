"""POST /servers/<id>/action: the body's first key names the action, `ACTIONS` maps it to a function
that checks the action's body and runs one command. Every action answers 202 with no body.

    {"os-start": null}                                         -> run_vm
    {"os-stop": null}                                          -> stop_vm
    {"attach_usb_controller": {"type": "ehci", "count": 2}}    -> add_controller (the seed's; VM down only)
    {"attach_usb_devices": {"usb_devices_requests": [{"id": 1}]}}  -> add_hostdev, per device (seed 001)
    {"detach_usb_devices": {"usb_devices_requests": [{"id": 1}]}}  -> deactivate (running VM), then
                                                                   remove_hostdev, per device

The ids are those of os-hypervisors' usb_device_stats. Devices are attached or detached one after the
other: a refusal stops there and names the device, the ones before it stay done.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine import usb
from engine.commands import add_controller, add_hostdev, plug_unplug_hostdev, remove_hostdev, run_vm, stop_vm
from engine.dao import devices
from engine.errors import BadRequest, NotFound
from engine.nova.common import Checker, run, sessions, visible

Action = Callable[[str, Any], None]


def _no_arguments(name: str, value: Any) -> None:
    if value not in (None, {}):
        raise BadRequest(f"Invalid input for field/attribute {name}. Value: {value!r}. Must be null.")


def start(server_id: str, value: Any) -> None:
    _no_arguments("os-start", value)
    run(run_vm, vm_id=server_id)


def stop(server_id: str, value: Any) -> None:
    _no_arguments("os-stop", value)
    run(stop_vm, vm_id=server_id)


def usb_controller_request(value: Any) -> dict[str, Any]:
    """The seed's body: {"type": <a USB controller model>, "count": <how many, default 1>}. A type that
    names no model is bad input (400), as Nova answers a value outside a field's enum; how many a VM
    may get, and whether it may get one now, is the command's to say."""
    c = Checker()
    body = c.object(value, "attach_usb_controller", allowed=("type", "count"), required=("type",))
    model = c.string(body["type"], "attach_usb_controller.type", max_length=32) if "type" in body else None
    if model is not None and usb.model_of(model) is None:
        c.bad("attach_usb_controller.type", model, f"Must be one of {', '.join(usb.NAMES)}")
        model = None
    count = c.integer(body.get("count", 1), "attach_usb_controller.count", minimum=1)
    c.done()
    return {"model": model, "count": count}


def attach_usb_controller(server_id: str, value: Any) -> None:
    request = usb_controller_request(value)
    run(add_controller, vm_id=server_id, model=request["model"], count=request["count"])


def usb_devices_requests(name: str, value: Any) -> list[int]:
    """The seed's body, syntax only: {"usb_devices_requests": [{"id": <int>}, ...]}, at least one."""
    c = Checker()
    body = c.object(value, name, allowed=("usb_devices_requests",), required=("usb_devices_requests",))
    requests = body.get("usb_devices_requests")
    if not isinstance(requests, list) or not requests:
        c.bad(f"{name}.usb_devices_requests", requests, "Must be a list of at least one {\"id\": ...}")
        requests = []
    ids = []
    for i, item in enumerate(requests):
        entry = c.object(item, f"{name}.usb_devices_requests[{i}]", allowed=("id",), required=("id",))
        device_id = c.integer(entry["id"], f"{name}.usb_devices_requests[{i}].id", minimum=1) if "id" in entry \
            else None
        if device_id is not None:
            ids.append(device_id)
    c.done()
    return ids


def attach_usb_devices(server_id: str, value: Any) -> None:
    for device_id in usb_devices_requests("attach_usb_devices", value):
        run(add_hostdev, vm_id=server_id, host_device_id=device_id)


def detach_usb_devices(server_id: str, value: Any) -> None:
    """A device the guest has not released yet stays deactivating; detaching it again once it is
    released removes it."""
    for device_id in usb_devices_requests("detach_usb_devices", value):
        with sessions()() as s:
            row = devices.holding(s, device_id)
            if row is None or row.vm_id != server_id:
                raise NotFound(f"USB device {device_id} is not attached to server {server_id}.")
            hostdev_id, plugged = row.id, row.is_plugged
        vm_running = visible_status(server_id) != "down"
        if vm_running and plugged and run(plug_unplug_hostdev, vm_id=server_id, hostdev_id=hostdev_id,
                                          plug=False).pending:
            continue
        run(remove_hostdev, vm_id=server_id, hostdev_id=hostdev_id)


def visible_status(server_id: str) -> str:
    with sessions()() as s:
        return visible(s, server_id).status


#: The one table of server actions, by the body's first key.
ACTIONS: dict[str, Action] = {
    "os-start": start,
    "os-stop": stop,
    "attach_usb_controller": attach_usb_controller,
    "attach_usb_devices": attach_usb_devices,
    "detach_usb_devices": detach_usb_devices,
}


def dispatch(server_id: str, body: dict[str, Any]) -> None:
    """Run the action the body's one key names, on a server the request's tenant sees. A body of
    several keys is refused as Nova refuses it: which of them was meant is not for the engine to guess."""
    if len(body) != 1:
        raise BadRequest("Malformed request body: " + ("too many body keys" if body else "no action"))
    name = next(iter(body))
    action = ACTIONS.get(name)
    if action is None:
        raise BadRequest(f"There is no such action: {name}")
    with sessions()() as s:
        visible(s, server_id)
    action(server_id, body[name])
