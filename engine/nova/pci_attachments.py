"""Seed 003's os-pci_attachments on a server: POST attaches PCI devices by alias in Nova's request syntax
(`{"pciAttachment": {"pci_passthrough:alias": "a1:2"}}`, several aliases at once allowed, all or
nothing), GET lists the server's PCI devices, DELETE .../{attachment_id} detaches one -- 200 on v2
(and v2.1, which keeps v2's codes), 202 on v3, with no body. The bodies are the seed's, key for key.
Members may, on their project's servers (the commands pci_attach and pci_detach decide)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint

from engine.commands import pci_attach, pci_detach, pci_rules
from engine.dao.models import VmDevice
from engine.nova.common import Checker, json_body, mount, run, sessions, visible

KEY = "pci_passthrough:alias"
V3_DELETE, V2_DELETE = 202, 200


def attachment(d: VmDevice) -> dict[str, Any]:
    """One device in the seed's words: dev_id the host's node-device name, address the host's PCI
    address, inner_address the guest's (null while it is in no running guest)."""
    hd = d.host_device
    return {"attachment_id": d.id, "serverId": d.vm_id, "dev_id": hd.name if hd else None,
            "address": hd.pci_address if hd else None, "inner_address": pci_rules.guest_address(d),
            "vendor_id": hd.vendor_id if hd else None, "product_id": hd.product_id if hd else None}


def attach_request(server_id: str, body: Any) -> str:
    """The body's request text, syntax checked (names and counts); whether the aliases exist is the
    command's to say."""
    c = Checker()
    c.object(body, "", allowed=("pciAttachment",), required=("pciAttachment",))
    inner = c.object(body.get("pciAttachment", {}) if isinstance(body, dict) else {}, "pciAttachment",
                     allowed=(KEY,), required=(KEY,))
    text = c.string(inner[KEY], f"pciAttachment.{KEY}", max_length=1024) if KEY in inner else None
    if text is not None:
        for reason in pci_attach.requests_of(pci_attach.Params(server_id, request=text))[1]:
            c.bad(f"pciAttachment.{KEY}", text, reason.vars["problem"])
    c.done()
    assert text is not None
    return text


def register(bp: Blueprint) -> None:
    path = "/servers/<string:server_id>/os-pci_attachments"

    @bp.get(path)
    def list_pci_attachments(server_id: str):
        with sessions()() as s:
            visible(s, server_id)
            return {"pciAttachment": [attachment(d) for d in pci_rules.attachments(s, server_id)]}

    @bp.post(path)
    def create_pci_attachments(server_id: str):
        text = attach_request(server_id, json_body())
        with sessions()() as s:
            visible(s, server_id)
        outcome = run(pci_attach, vm_id=server_id, request=text)
        with sessions()() as s:
            rows = {d.id: d for d in pci_rules.attachments(s, server_id)}
            return {"pci_devices": [attachment(rows[i]) for i in outcome.ids if i in rows]}

    @bp.delete(f"{path}/<string:attachment_id>")
    def delete_pci_attachment(server_id: str, attachment_id: str):
        with sessions()() as s:
            visible(s, server_id)
        run(pci_detach, vm_id=server_id, attachment_id=attachment_id)
        return "", V3_DELETE if mount() == "v3" else V2_DELETE
