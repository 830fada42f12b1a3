"""Define a VM in the engine (database only; RunVm starts it)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from engine import osinfo
from engine.commands import common
from engine.commands import reasons as R
from engine.commands.outcome import Outcome
from engine.dao import audit, clusters, vms
from engine.dao.models import GRAPHICS, MACHINES, Cluster, Vm
from engine.errors import Conflict, Reason, ValidationFailed
from engine.hostclient import HostClientFactory

# The agent's vmParams rules (schema/verbs.yaml), checked here so that a VM that exists can run.
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
PROPERTY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MEMORY_MB = (16, 1048576)
VCPUS = (1, 288)
BOOT_PATHS = ("kernel", "initrd", "serialLog")
BOOT_KEYS = BOOT_PATHS + ("cmdline", "pciePorts")


@dataclass(frozen=True)
class Params:
    name: str
    cluster_id: str | None = None        # None: the default cluster
    os_type: str = "other_linux"
    memory_mb: int = 256
    vcpus: int = 1
    machine: str = "pc"
    graphics: str = "none"
    project_id: str = "default"
    boot: dict[str, Any] | None = None   # kernel, initrd, cmdline, serialLog, pciePorts
    custom_properties: dict[str, str] | None = None


def check_custom_properties(props: dict[str, Any] | None) -> list[Reason]:
    found = []
    for key, value in (props or {}).items():
        if not isinstance(key, str) or not PROPERTY_RE.match(key):
            found.append(R.field_invalid("custom_properties", key, "names are letters, digits and '_'"))
        elif not isinstance(value, str) or len(value) > 4096:
            found.append(R.field_invalid(f"custom_properties.{key}", value, "a string of at most 4096 characters"))
    return found


def validate(params: Params, *, cluster: Cluster | None, name_in_use: bool) -> list[Reason]:
    found: list[Reason] = []
    if not NAME_RE.match(params.name or ""):
        found.append(R.name_invalid("VM", params.name, "1-64 letters, digits, '_', '.', '-'"))
    elif name_in_use:
        found.append(R.name_in_use("VM", params.name))
    if cluster is None:
        found.append(R.cluster_not_found(params.cluster_id or "Default"))
    if osinfo.get(params.os_type) is None:
        found.append(R.os_type_unknown(params.os_type))
    if not MEMORY_MB[0] <= params.memory_mb <= MEMORY_MB[1]:
        found.append(R.field_invalid("memory_mb", params.memory_mb, f"between {MEMORY_MB[0]} and {MEMORY_MB[1]}"))
    if not VCPUS[0] <= params.vcpus <= VCPUS[1]:
        found.append(R.field_invalid("vcpus", params.vcpus, f"between {VCPUS[0]} and {VCPUS[1]}"))
    if params.machine not in MACHINES:
        found.append(R.field_invalid("machine", params.machine, f"one of {', '.join(MACHINES)}"))
    if params.graphics not in GRAPHICS:
        found.append(R.field_invalid("graphics", params.graphics, f"one of {', '.join(GRAPHICS)}"))
    for key, value in (params.boot or {}).items():
        if key not in BOOT_KEYS:
            found.append(R.field_invalid(f"boot.{key}", value, f"boot settings are {', '.join(BOOT_KEYS)}"))
        elif key in BOOT_PATHS and value and not (isinstance(value, str) and value.startswith("/")):
            found.append(R.field_invalid(f"boot.{key}", value, "an absolute path"))
        elif key == "cmdline" and (not isinstance(value, str) or len(value) > 2048):
            found.append(R.field_invalid("boot.cmdline", value, "a string of at most 2048 characters"))
        elif key == "pciePorts" and (not isinstance(value, int) or not 0 <= value <= 30):
            found.append(R.field_invalid("boot.pciePorts", value, "between 0 and 30"))
    found += check_custom_properties(params.custom_properties)
    return found


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params) -> Outcome:
    try:
        with sessions.begin() as s:
            if params.cluster_id is None:
                cluster = clusters.ensure_default(s)
            else:
                cluster = clusters.get(s, params.cluster_id)
            taken = bool(params.name) and vms.get_by_name(s, params.name) is not None
            found = validate(params, cluster=cluster, name_in_use=taken)
            if found:
                raise common.refusal(found, f"Cannot add VM {params.name}.")
            assert cluster is not None
            vm = Vm(name=params.name, cluster_id=cluster.id, os_type=params.os_type, memory_mb=params.memory_mb,
                    vcpus=params.vcpus, machine=params.machine, graphics=params.graphics,
                    project_id=params.project_id, boot=dict(params.boot or {}),
                    custom_properties=dict(params.custom_properties or {}), status=common.DOWN)
            s.add(vm)
            s.flush()
            audit.record(s, "VM_ADDED", f"VM {vm.name} added to cluster {cluster.name}", vm_id=vm.id,
                         vm=vm.name, cluster=cluster.name)
            return Outcome(id=vm.id, created=True)
    except (ValidationFailed, Conflict) as err:
        common.audit_refusal(sessions, "VM_ADD_FAILED", f"Cannot add VM {params.name}", err)
        raise
