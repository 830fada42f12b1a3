"""Add a USB redirection device to a VM (seed 001: `{"bus": "usb", "type": "spicevmc"}`, or `tcp` with a
host and port). Like a NIC it is active by default: hot-plugged at once on a running VM (through the
device core's live runner), plugged at the next start of a stopped one.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine import agent_patterns
from engine import reasons as R
from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common, redirdev_rules
from engine.commands.outcome import Outcome
from engine.dao import audit, devices
from engine.dao.models import Host, Vm
from engine.devices import kinds, live, state
from engine.errors import Reason
from engine.hostclient import HostClientFactory
from engine.vocab import PLUG_STATUSES, UP

MODES = ("connect", "bind")


@dataclass(frozen=True)
class Params:
    vm_id: str
    type: str = "spicevmc"
    bus: str = "usb"
    host: str | None = None          # tcp only
    port: int | None = None          # tcp only
    mode: str | None = None          # tcp only: connect (default) or bind
    active: bool = True


def validate(params: Params, *, vm: Vm, host: Host | None, free_ports: int) -> list[Reason]:
    """canDo of AddRedirdev. `host`: the host a running VM is on; `free_ports`: USB ports left."""
    found: list[Reason] = []
    if params.bus != "usb":
        found.append(R.field_invalid("bus", params.bus, "USB redirection is on bus usb"))
    if params.type not in redirdev_rules.TYPES:
        found.append(R.redirdev_type_unsupported(params.type))
    elif params.type == "tcp":
        if not agent_patterns.matches("hostname", params.host):
            found.append(R.field_invalid("host", params.host, "a host name or address, for type tcp"))
        if not isinstance(params.port, int) or not 1 <= params.port <= 65535:
            found.append(R.field_invalid("port", params.port, "1 to 65535, for type tcp"))
        if params.mode is not None and params.mode not in MODES:
            found.append(R.field_invalid("mode", params.mode, "connect or bind"))
    elif params.host is not None or params.port is not None or params.mode is not None:
        found.append(R.field_invalid("host", params.host, "host, port and mode are for type tcp"))
    if params.active:
        if vm.status not in PLUG_STATUSES:
            found.append(R.vm_status_illegal(vm.name, vm.status, PLUG_STATUSES, "add an active USB redirection device"))
        elif vm.status == UP and host is None:
            found.append(R.host_not_found(vm.run_on_host))
        found += redirdev_rules.check(vm, params.type, free=free_ports)
    return found


def spec_params(params: Params) -> dict[str, object]:
    if params.type != "tcp":
        return {}
    spec: dict[str, object] = {"host": params.host, "port": params.port}
    if params.mode:
        spec["mode"] = params.mode
    return spec


def _host(s: Session, vm: Vm, params: Params) -> Host | None:
    """The host a running VM is on, when the device is to be plugged live."""
    return common.load_host(s, vm) if params.active and vm.status == UP else None


def check(s: Session, vm: Vm, params: Params) -> list[Reason]:
    """canDo with its inputs read from the database (what execute checks; nothing changes)."""
    return validate(params, vm=vm, host=_host(s, vm, params), free_ports=redirdev_rules.free_ports(s, vm))


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    with common.audited(sessions, "REDIRDEV_ADD", vm_id=params.vm_id):
        with sessions.begin() as s:
            vm = common.load_vm(s, principal, params.vm_id, for_update=True)
            is_live = params.active and vm.status == UP
            host = _host(s, vm, params)
            found = check(s, vm, params)
            if found:
                raise common.refusal(found, f"Cannot add a USB redirection device to VM {vm.name}.")
            dev = devices.add(s, vm.id, type=kinds.REDIRDEV.type, device=params.type,
                              is_plugged=params.active and not is_live, spec_params=spec_params(params))
            audit.record(s, kinds.REDIRDEV.audit("ADDED"), f"{kinds.REDIRDEV.describe(dev)} added to VM {vm.name}"
                         + ("" if params.active else ", deactivated"), vm_id=vm.id, device_id=dev.id,
                         type=params.type, active=params.active)
            if not is_live:
                return Outcome(id=dev.id, created=True)
            assert host is not None
            call = live.prepare(s, dev, state.Subject.of(dev, vm, host), host, plug=True)
    return Outcome(id=call.subject.device_id, created=True, pending=live.run(sessions, hosts, call))
