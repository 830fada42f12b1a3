"""/api/vms/{vm_id}/redirdevs: a VM's USB redirection devices (SPICE spicevmc, or tcp) with the same
activate / deactivate semantics as NICs: live on a running VM, at the next start on a stopped one."""
from __future__ import annotations

from engine.api.common import Blueprint
from engine.api.device_routes import DeviceRoutes, make_blueprint as make_device_blueprint
from engine.api.schemas import RedirdevCreateSchema, RedirdevSchema
from engine.api.views import redirdev_view
from engine.commands import add_redirdev, plug_unplug_redirdev, remove_redirdev
from engine.devices import kinds

ROUTES = DeviceRoutes(
    kind=kinds.REDIRDEV, path="redirdevs", id_param="redirdev_id",
    description="A VM's USB redirection devices and their hot-plug.",
    view=redirdev_view, schema=RedirdevSchema, create_schema=RedirdevCreateSchema,
    add=add_redirdev, remove=remove_redirdev, plug=plug_unplug_redirdev,
    docs={"create": "Add a USB redirection device\n\n`{\"bus\": \"usb\", \"type\": \"spicevmc\"}` (the VM needs SPICE "
                    "graphics) or `{\"type\": \"tcp\", \"host\": ..., \"port\": ...}`. Active by default: plugged at "
                    "once on a running VM, at the next start otherwise. The VM's USB controllers need a free port."})


def make_blueprint() -> Blueprint:
    return make_device_blueprint(ROUTES)
