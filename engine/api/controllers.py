"""/api/vms/{vm_id}/controllers: a VM's USB controllers (seed 000). Added and removed only while the VM
is down; `count` adds several at once, each with the next free index."""
from __future__ import annotations

from engine.api.common import Blueprint
from engine.api.device_routes import DeviceRoutes, make_blueprint as make_device_blueprint
from engine.api.schemas import ControllerCreateSchema, ControllerSchema
from engine.api.views import controller_view
from engine.commands import add_controller, remove_controller
from engine.devices import kinds

ROUTES = DeviceRoutes(
    kind=kinds.CONTROLLER, path="controllers", id_param="controller_id",
    description="A VM's USB controllers: cold plug only (stop the VM first).",
    view=controller_view, schema=ControllerSchema, create_schema=ControllerCreateSchema,
    add=add_controller, remove=remove_controller,
    docs={
        "create": "Add USB controllers (VM down only)\n\n`{\"type\": \"usb\", \"model\": \"ehci\", \"count\": 2}` adds "
                  "two, each with the next free index; `index` picks one (count 1). `companions` adds an "
                  "ich9-ehci1's three UHCI companions at its index. The answer is the first controller added; "
                  "the list shows them all.",
        "delete": "Remove a USB controller (VM down only; none of the VM's USB devices may sit on it)",
    })


def make_blueprint() -> Blueprint:
    return make_device_blueprint(ROUTES)
