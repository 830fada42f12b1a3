"""/api/vms/{vm_id}/hostdevs: a VM's USB host devices (admins: raw assignment), with the activate /
deactivate semantics of every device kind: live on a running VM, in the definition of a stopped one."""
from __future__ import annotations

from engine.api.common import Blueprint
from engine.api.device_routes import DeviceRoutes, make_blueprint as make_device_blueprint
from engine.api.schemas import HostdevCreateSchema, HostdevSchema
from engine.api.views import hostdev_view
from engine.commands import add_hostdev, plug_unplug_hostdev, remove_hostdev
from engine.devices import kinds

ROUTES = DeviceRoutes(
    kind=kinds.HOSTDEV, path="hostdevs", id_param="hostdev_id",
    description="A VM's USB host devices (passthrough) and their hot-plug. Admins only.",
    view=hostdev_view, schema=HostdevSchema, create_schema=HostdevCreateSchema,
    add=add_hostdev, remove=remove_hostdev, plug=plug_unplug_hostdev,
    docs={"create": "Attach a USB host device\n\n`{\"host_device_id\": 5}`: a device of the VM's host (a stopped VM "
                    "holding devices is pinned to their host). Plugged at once on a running VM, into the "
                    "definition of a stopped one. Two requests for one device never both win.",
          "delete": "Detach a host device (deactivate it first on a running VM)"})


def make_blueprint() -> Blueprint:
    return make_device_blueprint(ROUTES)
