"""POST /servers/<id>/action: the body's first key names the action, `ACTIONS` maps it to a function
that checks the action's body and runs one command. Every action answers 202 with no body.

    {"os-start": null}                                         -> run_vm
    {"os-stop": null}                                          -> stop_vm
    {"attach_usb_controller": {"type": "ehci", "count": 2}}    -> add_controller (the seed's; VM down only)
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.commands import add_controller, run_vm, stop_vm
from engine.nova.common import BadRequest, Checker, run, sessions, visible

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
    """The seed's body, syntax only: {"type": <a USB controller model>, "count": <how many, default 1>}.
    Whether the model exists and how many a VM may get is the command's to say."""
    c = Checker()
    body = c.object(value, "attach_usb_controller", allowed=("type", "count"), required=("type",))
    model = c.string(body["type"], "attach_usb_controller.type", max_length=32) if "type" in body else None
    count = c.integer(body.get("count", 1), "attach_usb_controller.count", minimum=1)
    c.done()
    return {"model": model, "count": count}


def attach_usb_controller(server_id: str, value: Any) -> None:
    request = usb_controller_request(value)
    run(add_controller, vm_id=server_id, model=request["model"], count=request["count"])


#: The one table of server actions, by the body's first key.
ACTIONS: dict[str, Action] = {
    "os-start": start,
    "os-stop": stop,
    "attach_usb_controller": attach_usb_controller,
}


def dispatch(server_id: str, body: dict[str, Any]) -> None:
    """Run the action the body's first key names, on a server the request's tenant sees."""
    if not body:
        raise BadRequest("Malformed request body.")
    name = next(iter(body))
    action = ACTIONS.get(name)
    if action is None:
        raise BadRequest(f"There is no such action: {name}")
    with sessions()() as s:
        visible(s, server_id)
    action(server_id, body[name])
