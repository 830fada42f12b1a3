"""/api/vms/{vm_id}/pci_attachments: a VM's PCI devices by alias (seed 003's os-pci_attachments, native):
attach `count` devices of an alias -- hot-plugged when the VM runs, all or nothing; in its definition
when it is down -- list them, detach one. Members may, on their projects' VMs: an alias is what an
admin allowed. /api/pci_aliases: the configured aliases (admins)."""
from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy.orm import Session

from engine.api.common import Blueprint, run, sessions, visible_vm
from engine.api.schemas import PciAliasSchema, PciAttachmentCreateSchema, PciAttachmentSchema
from engine.api.views import pci_attachment_view
from engine.commands import pci_attach, pci_detach, pci_rules
from engine.dao import hosts as hosts_dao, pci_aliases
from engine.dao.models import VmDevice


def _views(s: Session, rows: list[VmDevice]) -> list[dict[str, Any]]:
    names: dict[str, str | None] = {}
    for hd in (r.host_device for r in rows):
        if hd is not None and hd.host_id not in names:
            host = hosts_dao.get(s, hd.host_id)
            names[hd.host_id] = host.name if host is not None else None
    return [pci_attachment_view(r, names.get(r.host_device.host_id) if r.host_device else None) for r in rows]


def read(vm_id: str, ids: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """The VM's PCI attachments (only `ids`, in their order, when given)."""
    with sessions()() as s:
        visible_vm(s, vm_id)
        rows = pci_rules.attachments(s, vm_id)
        if ids is not None:
            by_id = {r.id: r for r in rows}
            rows = [by_id[i] for i in ids if i in by_id]
        return _views(s, rows)


def make_blueprint() -> Blueprint:
    blp = Blueprint("pci_attachments", __name__, url_prefix="/api/vms/<string:vm_id>/pci_attachments",
                    description="A VM's PCI devices by alias (passthrough) and their hot-plug.")

    @blp.route("")
    class Collection(MethodView):
        @blp.response(200, PciAttachmentSchema(many=True))
        def get(self, vm_id):
            """List a VM's PCI devices (attached by alias, or given by its flavor for the run)"""
            return read(vm_id)

        @blp.arguments(PciAttachmentCreateSchema)
        @blp.response(201, PciAttachmentSchema(many=True))
        def post(self, data, vm_id):
            """Attach PCI devices by alias

            `{"alias": "a1", "count": 2}`: free devices of the alias on the VM's host with their IOMMU groups
            whole (a stopped VM: the host its devices pin it to, else the first up host that has them).
            A running VM gets them hot-plugged, all or nothing -- if one fails, the ones plugged are
            unplugged and every device goes back -- and needs a free PCIe root port for each on q35
            (pcie_ports_free). A stopped VM gets them in its definition."""
            outcome = run(pci_attach, vm_id=vm_id, **data)
            return read(vm_id, outcome.ids), 201

    @blp.route("/<string:attachment_id>")
    class ById(MethodView):
        @blp.response(204)
        @blp.alt_response(202, schema=PciAttachmentSchema, description="The guest has not released the device "
                          "yet: status is 'detaching' until the host reports the removal; then it is gone.")
        def delete(self, vm_id, attachment_id):
            """Detach a PCI device

            A running VM's device is hot-unplugged (waiting for the guest), a stopped VM's leaves its
            definition; the device goes back to its host."""
            outcome = run(pci_detach, vm_id=vm_id, attachment_id=attachment_id)
            left = read(vm_id, (attachment_id,)) if outcome.pending else []
            return (left[0], 202) if left else None       # pending, unless the host reported it meanwhile

    return blp


def make_aliases_blueprint() -> Blueprint:
    blp = Blueprint("pci_aliases", __name__, url_prefix="/api/pci_aliases",
                    description="The PCI aliases of the engine's configuration ([pci] alias). Admins only.")

    @blp.route("")
    class Aliases(MethodView):
        @blp.response(200, PciAliasSchema(many=True))
        def get(self):
            """List the configured PCI aliases (several may share a name: it then means any of them)"""
            with sessions()() as s:
                return pci_aliases.list_all(s)

    return blp
