"""Define a VM in the engine (database only; RunVm starts it).

From a flavor, the VM takes its size (unless given) and the devices its extra specs ask for
(flavor_specs.devices_for: a USB controller, USB redirection devices), created plugged in the same
transaction and applied at the VM's first start. SPICE USB redirection needs SPICE graphics: a VM
from such a flavor gets graphics spice unless the request asked for graphics, and a request that
asked for other graphics is refused."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine import agent_patterns
from engine import flavor_specs, osinfo, usb
from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common
from engine.commands import flavor_common as F
from engine import reasons as R
from engine.commands.outcome import Outcome
from engine.dao import audit, clusters, devices, vms
from engine.dao.models import GRAPHICS, MACHINES, Cluster, Flavor, Vm
from engine.errors import Reason
from engine.hostclient import HostClientFactory

# The agent's vmParams rules (schema/verbs.yaml), checked here so that a VM that exists can run.
MEMORY_MB = (16, 1048576)
VCPUS = (1, 288)
BOOT_PATHS = ("kernel", "initrd", "serialLog")
BOOT_KEYS = BOOT_PATHS + ("cmdline", "pciePorts")
DEFAULT_MEMORY_MB = 256
DEFAULT_VCPUS = 1
# Nova's server metadata limits.
META_ITEMS = 128
META_LENGTH = 255


@dataclass(frozen=True)
class Params:
    name: str
    cluster_id: str | None = None        # None: the default cluster
    os_type: str = "other_linux"
    memory_mb: int | None = None         # None: the flavor's, else 256
    vcpus: int | None = None             # None: the flavor's, else 1
    machine: str = "pc"
    graphics: str | None = None          # None: spice if the flavor's devices need it, else none
    project_id: str = "default"
    boot: dict[str, Any] | None = None   # kernel, initrd, cmdline, serialLog, pciePorts
    custom_properties: dict[str, str] | None = None
    flavor_id: str | None = None
    meta: dict[str, str] | None = None   # Nova-style server metadata: kept and shown, never interpreted


@dataclass(frozen=True)
class Settings:
    """What the VM gets once the flavor and the defaults have filled what the request left out."""

    memory_mb: Any
    vcpus: Any
    graphics: Any


def _flavor_needs_spice(flavor: Flavor | None) -> bool:
    return flavor is not None and not flavor_specs.validate(flavor.extra_specs) \
        and flavor_specs.needs_spice(flavor.extra_specs)


def settings(params: Params, flavor: Flavor | None) -> Settings:
    memory_mb = params.memory_mb if params.memory_mb is not None else \
        flavor.memory_mb if flavor is not None else DEFAULT_MEMORY_MB
    vcpus = params.vcpus if params.vcpus is not None else flavor.vcpus if flavor is not None else DEFAULT_VCPUS
    graphics = params.graphics if params.graphics is not None else \
        "spice" if _flavor_needs_spice(flavor) else "none"
    return Settings(memory_mb=memory_mb, vcpus=vcpus, graphics=graphics)


def check_custom_properties(props: dict[str, Any] | None) -> list[Reason]:
    found = []
    for key, value in (props or {}).items():
        if not agent_patterns.matches("propertyName", key):
            found.append(R.field_invalid("custom_properties", key, "names are 1-64 letters, digits and '_', "
                                         "not a loader or interpreter variable (LD_*, PYTHON*, PATH, ...) "
                                         "nor vmId"))
        elif not agent_patterns.matches("text", value) or len(value) > 4096:
            found.append(R.field_invalid(f"custom_properties.{key}", value,
                                         "a string of at most 4096 characters, without control characters"))
    return found


def check_meta(meta: dict[str, Any] | None) -> list[Reason]:
    if meta is None:
        return []
    if not isinstance(meta, dict):
        return [R.field_invalid("meta", meta, "an object of strings")]
    found = []
    if len(meta) > META_ITEMS:
        found.append(R.field_invalid("meta", f"{len(meta)} items", f"at most {META_ITEMS} items"))
    for key, value in meta.items():
        if not isinstance(key, str) or not flavor_specs.KEY_RE.match(key):     # Nova's metadata keys
            found.append(R.field_invalid("meta", key, f"keys are 1-{META_LENGTH} letters, digits, spaces and "
                                         "'-', '_', ':', '.'"))
        elif not isinstance(value, str) or len(value) > META_LENGTH:
            found.append(R.field_invalid(f"meta.{key}", value, f"a string of at most {META_LENGTH} characters"))
    return found


def check_flavor(params: Params, flavor: Flavor | None) -> list[Reason]:
    """The flavor exists, its specs are (still) valid, the graphics asked for suit its devices, and its
    redirection devices find a USB port each."""
    if params.flavor_id is None:
        return []
    if flavor is None:
        return [F.flavor_not_found(params.flavor_id)]
    found = flavor_specs.validate(flavor.extra_specs)
    if found:
        return found
    if params.graphics not in (None, "spice") and flavor_specs.needs_spice(flavor.extra_specs):
        found.append(R.spice_required(params.name, params.graphics))
    rows = flavor_specs.devices_for(flavor.extra_specs)
    controllers = [r["spec_params"] for r in rows if r["type"] == "controller"]
    redirdevs = sum(1 for r in rows if r["type"] == "redirdev")
    if redirdevs and usb.free_ports(params.machine, controllers, redirdevs) < 0:
        found.append(F.flavor_usb_ports_short(flavor.name, redirdevs, params.machine))
    return found


def validate(params: Params, *, cluster: Cluster | None, name_in_use: bool,
             flavor: Flavor | None = None) -> list[Reason]:
    """`flavor`: the row of params.flavor_id (None when there is none or it does not exist)."""
    found: list[Reason] = []
    size = settings(params, flavor)
    if not agent_patterns.matches("name", params.name):
        found.append(R.name_invalid("VM", params.name, "1-64 letters, digits, '_', '.', '-'"))
    elif name_in_use:
        found.append(R.name_in_use("VM", params.name))
    if cluster is None:
        found.append(R.cluster_not_found(params.cluster_id or "Default"))
    if osinfo.get(params.os_type) is None:
        found.append(R.os_type_unknown(params.os_type))
    if not _whole(size.memory_mb) or not MEMORY_MB[0] <= size.memory_mb <= MEMORY_MB[1]:
        found.append(R.field_invalid("memory_mb", size.memory_mb, f"between {MEMORY_MB[0]} and {MEMORY_MB[1]}"))
    if not _whole(size.vcpus) or not VCPUS[0] <= size.vcpus <= VCPUS[1]:
        found.append(R.field_invalid("vcpus", size.vcpus, f"between {VCPUS[0]} and {VCPUS[1]}"))
    if params.machine not in MACHINES:
        found.append(R.field_invalid("machine", params.machine, f"one of {', '.join(MACHINES)}"))
    if size.graphics not in GRAPHICS:
        found.append(R.field_invalid("graphics", size.graphics, f"one of {', '.join(GRAPHICS)}"))
    for key, value in (params.boot or {}).items():
        if key not in BOOT_KEYS:
            found.append(R.field_invalid(f"boot.{key}", value, f"boot settings are {', '.join(BOOT_KEYS)}"))
        elif key in BOOT_PATHS and value and not agent_patterns.matches("hostPath", value):
            found.append(R.field_invalid(f"boot.{key}", value, "an absolute path, without control characters or "
                                         "any of < > & ' \""))
        elif key == "cmdline" and (not agent_patterns.matches("text", value) or len(value) > 2048):
            found.append(R.field_invalid("boot.cmdline", value, "a string of at most 2048 characters, without "
                                         "control characters"))
        elif key == "pciePorts" and (not isinstance(value, int) or not 0 <= value <= 30):
            found.append(R.field_invalid("boot.pciePorts", value, "between 0 and 30"))
    found += check_custom_properties(params.custom_properties)
    found += check_meta(params.meta)
    found += check_flavor(params, flavor)
    return found


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    common.check_project(principal, params.project_id)
    with common.audited(sessions, "VM_ADD"), common.unique_name("VM", params.name):
        with sessions.begin() as s:
            cluster: Cluster | None
            if params.cluster_id is None:
                cluster = clusters.ensure_default(s)
            else:
                cluster = clusters.get(s, params.cluster_id)
            taken = agent_patterns.matches("name", params.name) and vms.get_by_name(s, params.name) is not None
            flavor = common.load_flavor(s, principal, params.flavor_id) if params.flavor_id is not None else None
            found = validate(params, cluster=cluster, name_in_use=taken, flavor=flavor)
            if found:
                raise common.refusal(found, f"Cannot add VM {params.name}.")
            assert cluster is not None
            size = settings(params, flavor)
            vm = Vm(name=params.name, cluster_id=cluster.id, os_type=params.os_type, memory_mb=size.memory_mb,
                    vcpus=size.vcpus, machine=params.machine, graphics=size.graphics,
                    project_id=params.project_id, boot=dict(params.boot or {}),
                    custom_properties=dict(params.custom_properties or {}), status=common.DOWN,
                    flavor=flavor.id if flavor is not None else None, meta=dict(params.meta or {}),
                    created_by=principal.user)
            s.add(vm)
            s.flush()
            rows = flavor_specs.devices_for(flavor.extra_specs) if flavor is not None else []
            for row in rows:
                devices.add(s, vm.id, type=row["type"], device=row["device"], is_plugged=True,
                            spec_params=row["spec_params"])
            audit.record(s, "VM_ADDED", f"VM {vm.name} added to cluster {cluster.name}"
                         + (f" from flavor {flavor.name}" if flavor is not None else ""), vm_id=vm.id,
                         vm=vm.name, cluster=cluster.name, flavor=flavor.name if flavor is not None else None,
                         devices=len(rows))
            return Outcome(id=vm.id, created=True)
