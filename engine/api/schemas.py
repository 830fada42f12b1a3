"""marshmallow schemas of the REST API: request bodies and query strings (syntax only; meaning is the
commands' job) and the views the API answers with. Unknown fields are refused everywhere."""
from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from engine.dao import vms as vms_dao
from engine.vocab import FENCE_TYPES
from engine.dao.models import GRAPHICS, HOST_STATUSES, HOSTDEV_STATUSES, MACHINES, NIC_MODELS, PLUG_STATES, VM_STATUSES

MAC_RE = r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$"
NAME = validate.Length(min=1, max=64)
ID = validate.Length(min=1, max=36)
MAX_ID = 2**31 - 1  # the largest integer key every supported database stores (PostgreSQL: integer)


class Pattern(validate.Regexp):
    """validate.Regexp over the whole string. The pattern keeps its final `$` for the OpenAPI
    document, where it is the end of the string; Python's `$` also lets one final newline through."""

    def __call__(self, value):
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class JsonBoolean(fields.Boolean):
    """A JSON true or false; no strings or numbers standing for one."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


# ---------------------------------------------------------------------------------------------
# requests


class ClusterCreateSchema(StrictSchema):
    name = fields.String(required=True, validate=NAME)
    compat_version = fields.String(validate=[Pattern(r"^[0-9]+\.[0-9]+$", error="Must look like 4.7."),
                                             validate.Length(max=16)],
                                   metadata={"description": "Compatibility version; default 4.7."})
    description = fields.String(validate=validate.Length(max=255))


class HostCreateSchema(StrictSchema):
    name = fields.String(required=True, validate=NAME)
    url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False,
                     metadata={"description": "The agent's JSON-RPC endpoint, e.g. http://host:54321/jsonrpc"})
    cluster_id = fields.String(allow_none=True, validate=ID,
                               metadata={"description": "Default cluster when omitted."})


class HostFenceSchema(StrictSchema):
    fence_type = fields.String(required=True, validate=validate.OneOf(FENCE_TYPES), metadata={
        "description": "manual: an administrator confirms the host was rebooted (or is off); its VMs are "
                       "marked down."})


class BootSchema(StrictSchema):
    kernel = fields.String(validate=validate.Length(min=1, max=4096))
    initrd = fields.String(validate=validate.Length(min=1, max=4096))
    cmdline = fields.String(validate=validate.Length(max=4096))
    serialLog = fields.String(validate=validate.Length(min=1, max=4096))
    pciePorts = fields.Integer(strict=True, validate=validate.Range(min=0, max=30),
                               metadata={"description": "Spare pcie-root-ports for hot-plug on q35."})


class VmQuerySchema(StrictSchema):
    project_id = fields.String(validate=NAME)
    limit = fields.Integer(validate=validate.Range(min=1, max=vms_dao.PAGE_MAX), load_default=vms_dao.PAGE_MAX,
                           metadata={"description": "At most this many VMs, by name. A full page answers a "
                                                    "`Link: <...>; rel=\"next\"` header to the next one."})
    marker = fields.String(validate=ID, metadata={"description": "The id of the last VM of the previous page: "
                                                                 "the list goes on after it."})


class VmCreateSchema(StrictSchema):
    name = fields.String(required=True, validate=NAME)
    cluster_id = fields.String(allow_none=True, validate=ID,
                               metadata={"description": "Default cluster when omitted."})
    os_type = fields.String(validate=validate.Length(min=1, max=32),
                            metadata={"description": "An id of GET /api/osinfo; default other_linux."})
    memory_mb = fields.Integer(strict=True, validate=validate.Range(min=16, max=4 * 1024 * 1024))
    vcpus = fields.Integer(strict=True, validate=validate.Range(min=1, max=512))
    machine = fields.String(validate=validate.OneOf(MACHINES))
    graphics = fields.String(validate=validate.OneOf(GRAPHICS))
    project_id = fields.String(validate=NAME)
    boot = fields.Nested(BootSchema)
    custom_properties = fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=64)),
                                    values=fields.String(validate=validate.Length(max=4096)))
    flavor_id = fields.String(validate=validate.Length(min=1, max=64),
                              metadata={"description": "Size (unless given) and devices from this flavor."})


class VmStartSchema(StrictSchema):
    host_id = fields.String(allow_none=True, validate=ID,
                            metadata={"description": "Run on this host; the scheduler picks one when omitted."})


class EmptySchema(StrictSchema):
    """Actions that take no parameters accept an empty body or `{}`."""


class NicCreateSchema(StrictSchema):
    name = fields.String(required=True, validate=NAME)
    network = fields.String(required=True, validate=NAME)
    model = fields.String(validate=validate.OneOf(NIC_MODELS), metadata={"description": "Default pv."})
    mac = fields.String(allow_none=True, validate=Pattern(MAC_RE, error="Not a MAC address."),
                        metadata={"description": "Taken from the MAC pool when omitted."})
    linked = JsonBoolean(metadata={"description": "Default true."})
    active = JsonBoolean(load_default=True,
                            metadata={"description": "Plug the NIC (now if the VM is up, else at its next "
                                                     "start). Default true."})


class NicUpdateSchema(StrictSchema):
    """Every field is optional (PUT and PATCH alike change only what is sent). Changes other than
    `linked` are refused while the VM runs with the NIC plugged: deactivate it first."""

    name = fields.String(validate=NAME)
    network = fields.String(validate=NAME)
    model = fields.String(validate=validate.OneOf(NIC_MODELS))
    mac = fields.String(validate=Pattern(MAC_RE, error="Not a MAC address."))
    linked = JsonBoolean()


class ControllerCreateSchema(StrictSchema):
    type = fields.String(load_default="usb", metadata={"description": "Only usb."})
    model = fields.String(required=True, validate=validate.Length(min=1, max=32),
                          metadata={"description": "A libvirt USB model (piix3-uhci, ich9-ehci1, nec-xhci, "
                                                   "qemu-xhci, ...) or the seed's short names ehci, xhci, uhci."})
    count = fields.Integer(strict=True, load_default=1, metadata={"description": "How many; default 1."})
    index = fields.Integer(strict=True, allow_none=True,
                           metadata={"description": "The controller's index (unique per VM); the next free "
                                                    "one when omitted."})
    ports = fields.Integer(strict=True, allow_none=True, metadata={"description": "xHCI only: root-hub ports."})
    companions = JsonBoolean(load_default=False,
                             metadata={"description": "ich9-ehci1 only: add its three UHCI companions."})


class RedirdevCreateSchema(StrictSchema):
    bus = fields.String(load_default="usb")
    type = fields.String(load_default="spicevmc", metadata={"description": "spicevmc or tcp."})
    host = fields.String(allow_none=True, validate=validate.Length(min=1, max=253))
    port = fields.Integer(strict=True, allow_none=True)
    mode = fields.String(allow_none=True, metadata={"description": "tcp: connect (default) or bind."})
    active = JsonBoolean(load_default=True, metadata={"description": "Plug it (now if the VM is up, else at "
                                                                     "its next start). Default true."})


class EventQuerySchema(StrictSchema):
    vm_id = fields.String(validate=ID)
    code = fields.String(validate=validate.Length(min=1, max=64), metadata={"description": "e.g. NIC_PLUGGED"})
    after = fields.Integer(validate=validate.Range(min=0, max=MAX_ID), load_default=0,
                           metadata={"description": "Only events whose id is greater."})
    limit = fields.Integer(validate=validate.Range(min=1, max=1000), load_default=100)


# ---------------------------------------------------------------------------------------------
# views


class ClusterSchema(StrictSchema):
    id = fields.String()
    name = fields.String()
    compat_version = fields.String()
    description = fields.String()
    created_at = fields.DateTime()


class HostSchema(StrictSchema):
    id = fields.String()
    name = fields.String()
    cluster_id = fields.String()
    url = fields.String()
    status = fields.String(metadata={"enum": list(HOST_STATUSES)})
    capabilities = fields.Dict()
    last_refresh = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class VmSchema(StrictSchema):
    id = fields.String()
    name = fields.String()
    project_id = fields.String()
    cluster_id = fields.String()
    os_type = fields.String()
    status = fields.String(metadata={"enum": list(VM_STATUSES)})
    run_on_host = fields.String(allow_none=True)
    memory_mb = fields.Integer()
    vcpus = fields.Integer()
    machine = fields.String()
    graphics = fields.String()
    flavor = fields.String(allow_none=True)
    boot = fields.Dict()
    custom_properties = fields.Dict()
    pcie_ports_free = fields.Integer(allow_none=True, metadata={
        "description": "q35 while it runs: the PCIe root ports free for hot-plug (NICs, PCI devices); null "
                       "otherwise. Set at start by boot.pciePorts, else the engine's default."})
    created_by = fields.String(allow_none=True, metadata={
        "description": "The user who created the VM (null for VMs older than the record)."})
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class DeviceStateFields(StrictSchema):
    plugged = fields.Boolean(metadata={"description": "Activated: the desired state."})
    plug_state = fields.String(metadata={"enum": list(PLUG_STATES),
                                         "description": "plugging/unplugging while a host call is in flight."})
    address = fields.Dict(allow_none=True, metadata={"description": "Guest address while plugged."})
    alias = fields.String()
    last_error = fields.Dict(allow_none=True)


class NicSchema(DeviceStateFields):
    id = fields.String()
    vm_id = fields.String()
    name = fields.String()
    mac = fields.String()
    network = fields.String()
    model = fields.String()
    linked = fields.Boolean()


class ControllerSchema(DeviceStateFields):
    id = fields.String()
    vm_id = fields.String()
    type = fields.String()
    model = fields.String()
    index = fields.Integer()
    ports = fields.Integer(allow_none=True)
    master = fields.Integer(allow_none=True, metadata={"description": "A companion's start port on its EHCI."})


class RedirdevSchema(DeviceStateFields):
    id = fields.String()
    vm_id = fields.String()
    bus = fields.String()
    type = fields.String()
    host = fields.String(allow_none=True)
    port = fields.Integer(allow_none=True)
    mode = fields.String(allow_none=True)


class EventSchema(StrictSchema):
    id = fields.Integer()
    time = fields.DateTime()
    severity = fields.String()
    code = fields.String()
    message = fields.String()
    vm_id = fields.String(allow_none=True)
    device_id = fields.String(allow_none=True)
    host_id = fields.String(allow_none=True)
    host_code = fields.Integer(allow_none=True)
    host_message = fields.String(allow_none=True)
    vars = fields.Dict()
    actor = fields.String(allow_none=True, metadata={"description": "The user who acted; null for the engine "
                                                                    "itself (its monitor)."})


class OsInfoSchema(StrictSchema):
    id = fields.String()
    name = fields.String()
    family = fields.String()
    arch = fields.String(allow_none=True)
    supports = fields.Dict(keys=fields.String(), values=fields.Boolean(),
                           metadata={"description": "Each feature and whether this guest OS supports it."})
    min_cluster_version = fields.Dict(keys=fields.String(), values=fields.String(),
                                      metadata={"description": "The cluster compatibility version each "
                                                               "feature also needs, e.g. nic_hotplug: 3.1."})


class ReasonSchema(StrictSchema):
    code = fields.String()
    message = fields.String()
    vars = fields.Dict()


class HostFaultSchema(StrictSchema):
    name = fields.String(allow_none=True)
    code = fields.Integer(allow_none=True)
    message = fields.String(allow_none=True)


class FaultBodySchema(StrictSchema):
    code = fields.String()
    status = fields.Integer()
    message = fields.String()
    reasons = fields.List(fields.Nested(ReasonSchema))
    host = fields.Nested(HostFaultSchema)


class FaultSchema(StrictSchema):
    """Every error answer of the API."""

    fault = fields.Nested(FaultBodySchema)


class VerdictSchema(StrictSchema):
    allowed = fields.Boolean(required=True)
    reasons = fields.List(fields.Nested(ReasonSchema), required=True,
                          metadata={"description": "Every reason the action is refused now (empty when allowed)."})


class AllowedSchema(StrictSchema):
    vm = fields.Dict(keys=fields.String(), values=fields.Nested(VerdictSchema), required=True,
                     metadata={"description": "start, stop, remove, add_nic, add_active_nic, add_controller, "
                                              "add_redirdev, add_active_redirdev."})
    devices = fields.Dict(keys=fields.String(), values=fields.Dict(), required=True,
                          metadata={"description": "Device id -> {\"kind\": nic | controller | redirdev, and a "
                                                   "verdict for each action the kind offers: activate, deactivate, "
                                                   "update, remove}."})


class HostDeviceQuerySchema(StrictSchema):
    capability = fields.String(validate=validate.OneOf(("usb_device", "pci")))
    status = fields.String(validate=validate.OneOf(HOSTDEV_STATUSES))


class HostDeviceSchema(StrictSchema):
    """One device of a host's inventory. Identity is the port path, ids and serial (a PCI function's
    address and ids); name and bus/device are what the host calls it now and change on every replug."""

    id = fields.Integer()
    host_id = fields.String()
    name = fields.String(metadata={"description": "libvirt's node-device name, as last seen (usb_1_5)."})
    capability = fields.String(metadata={"description": "usb_device or pci."})
    vendor_id = fields.String()
    product_id = fields.String()
    vendor_name = fields.String(allow_none=True)
    product_name = fields.String(allow_none=True)
    bus = fields.Integer(allow_none=True)
    device = fields.Integer(allow_none=True)
    port_path = fields.String(allow_none=True)
    serial = fields.String(allow_none=True)
    pci_address = fields.String(allow_none=True)
    iommu_group = fields.Integer(allow_none=True)
    driver = fields.String(allow_none=True)
    allowed = fields.Boolean(metadata={"description": "Whether the host's whitelist lets it be assigned."})
    status = fields.String(metadata={"description": "available, claimed, allocated, unavailable or removed."})
    present = fields.Boolean(metadata={"description": "False while a device a VM holds is gone from the host."})
    vm_id = fields.String(allow_none=True, metadata={"description": "The VM that holds it."})
    last_error = fields.Dict(allow_none=True)
    updated_at = fields.DateTime()


class HostdevCreateSchema(StrictSchema):
    host_device_id = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=MAX_ID),
                                    metadata={"description": "A USB device of GET /api/hosts/{id}/devices."})
    required = JsonBoolean(load_default=False,
                           metadata={"description": "Startup policy: the VM may not start without the device. "
                                                    "Default false (optional: a start drops a missing device)."})
    active = JsonBoolean(load_default=True, metadata={"description": "Plug it (now if the VM is up, else at its "
                                                                     "next start). Default true."})


class HostdevSchema(DeviceStateFields):
    id = fields.String()
    vm_id = fields.String()
    host_device_id = fields.Integer(allow_none=True)
    source = fields.Dict(metadata={"description": "How the host finds it: portPath, serial or vendor/product."})
    required = fields.Boolean()
    present = fields.Boolean(allow_none=True, metadata={"description": "False while the device is pulled from its "
                                                                       "host: it is plugged in again when it is back."})


class PciAttachmentCreateSchema(StrictSchema):
    alias = fields.String(required=True, validate=NAME,
                          metadata={"description": "A configured PCI alias (GET /api/pci_aliases), e.g. a1."})
    count = fields.Integer(strict=True, load_default=1, metadata={"description": "How many devices; default 1."})


class PciAttachmentSchema(StrictSchema):
    """A PCI device of a VM (seed 003's os-pci_attachments entry), whether an attach or its flavor gave it."""

    attachment_id = fields.String(metadata={"description": "The VM's device id: DELETE it to detach."})
    vm_id = fields.String()
    dev_id = fields.String(allow_none=True,
                           metadata={"description": "The host's node-device name, e.g. pci_0000_02_00_0."})
    address = fields.String(allow_none=True, metadata={"description": "The host's PCI address, e.g. 0000:02:00.0."})
    inner_address = fields.String(allow_none=True, metadata={
        "description": "The guest's PCI address libvirt reported, e.g. 0000:03:00.0; null while not plugged."})
    vendor_id = fields.String(allow_none=True)
    product_id = fields.String(allow_none=True)
    alias = fields.String(allow_none=True, metadata={"description": "The PCI alias that asked for it."})
    origin = fields.String(allow_none=True, metadata={"description": "attachment, or flavor (for the run)."})
    host = fields.String(allow_none=True, metadata={"description": "The name of the device's host."})
    status = fields.String(metadata={"enum": ["attaching", "attached", "detaching", "detached"]})
    last_error = fields.Dict(allow_none=True)


class PciAliasSchema(StrictSchema):
    name = fields.String()
    vendor_id = fields.String()
    product_id = fields.String()
