"""marshmallow schemas of /api/flavors: syntax only (the meaning of extra specs is flavor_specs',
checked by the commands). Unknown fields are refused."""
from __future__ import annotations

from marshmallow import fields, validate

from engine.api.schemas import JsonBoolean, StrictSchema

FLAVOR_ID = validate.Length(min=1, max=64)
SPEC_KEY = fields.String(validate=validate.Length(min=1, max=255))
# Strings as in Nova; numbers are kept as their text; usb_redirection_devices may be given as a list.
SPECS_DESCRIPTION = ("Extra specs: usb_redirection_devices (a list of {bus: usb, type: spicevmc | tcp, host, port}, "
                     "or its JSON text), hw:usb_model (none | nec-xhci | qemu-xhci), hw:redirected_usb_ports "
                     "(0-15), usb_devices (a list of {id} or {vendor_id, product_id, count}, or its JSON text: USB "
                     "host devices, placed by the scheduler); pci_passthrough:alias is reserved. Unknown keys of the "
                     "hw:, usb_, plugboard: and pci_passthrough: namespaces are refused; other keys are kept as given.")


class FlavorCreateSchema(StrictSchema):
    id = fields.String(validate=FLAVOR_ID, metadata={"description": "A new uuid when omitted."})
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    memory_mb = fields.Integer(required=True, strict=True, validate=validate.Range(min=16, max=4 * 1024 * 1024))
    vcpus = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=512))
    disk_gb = fields.Integer(strict=True, validate=validate.Range(min=0, max=1024 * 1024),
                             metadata={"description": "Default 0."})
    is_public = JsonBoolean(metadata={"description": "Default true."})
    extra_specs = fields.Dict(keys=SPEC_KEY, values=fields.Raw(allow_none=False),
                              metadata={"description": SPECS_DESCRIPTION})


class FlavorSpecsSchema(StrictSchema):
    extra_specs = fields.Dict(keys=SPEC_KEY, values=fields.Raw(allow_none=False), required=True,
                              metadata={"description": SPECS_DESCRIPTION})


class FlavorSpecsPatchSchema(StrictSchema):
    extra_specs = fields.Dict(keys=SPEC_KEY, values=fields.Raw(allow_none=True), required=True,
                              metadata={"description": "Keys to set; a key whose value is null is removed "
                                                       "(it must be set)."})


class FlavorSchema(StrictSchema):
    id = fields.String()
    name = fields.String()
    memory_mb = fields.Integer()
    vcpus = fields.Integer()
    disk_gb = fields.Integer()
    is_public = fields.Boolean()
    extra_specs = fields.Dict(keys=fields.String(), values=fields.String())
    created_at = fields.DateTime()
