"""/api/vms/{vm_id}/nics: a VM's NICs, and their activate / deactivate actions (hot-plug and
hot-unplug when the VM runs, the plugged flag alone when it is down)."""
from __future__ import annotations

from typing import Any

from flask import current_app

from engine.api.common import Blueprint
from engine.api.device_routes import DeviceRoutes, make_blueprint as make_device_blueprint
from engine.api.schemas import NicCreateSchema, NicSchema, NicUpdateSchema
from engine.api.views import nic_view
from engine.commands import add_nic, plug_unplug_nic, remove_nic, update_nic
from engine.dao.models import VmDevice
from engine.devices import kinds


def _view(dev: VmDevice) -> dict[str, Any]:
    assert dev.nic is not None      # every device of the NIC kind has its vm_nics row
    return nic_view(dev.nic, dev)


ROUTES = DeviceRoutes(
    kind=kinds.NIC, path="nics", id_param="nic_id", description="A VM's network interfaces and their hot-plug.",
    view=_view, schema=NicSchema, create_schema=NicCreateSchema,
    add=add_nic, remove=remove_nic, plug=plug_unplug_nic, update=update_nic, update_schema=NicUpdateSchema,
    add_options=lambda: {"mac_pool": current_app.config.get("mac_pool")},
    docs={
        "create": "Add a NIC\n\nWith `active` (the default) the NIC is plugged: at once when the VM runs, at its "
                  "next start otherwise. If the host refuses the hot-plug, the answer is the host's fault and the "
                  "NIC stays, deactivated, with its last_error.",
        "update": "Update a NIC (only the fields sent)\n\nRefused while the VM runs with the NIC plugged, except "
                  "a change of `linked` alone, which is applied live.",
        "delete": "Remove a NIC (only when the VM is down or the NIC is deactivated)",
    })


def make_blueprint() -> Blueprint:
    return make_device_blueprint(ROUTES)
