"""Activate (plug) or deactivate (unplug) a VM's host device: the device core's state machine, with
the host device's claim taken on the way in (compare-and-set) and given back on the way out."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common, hostdev_rules
from engine.commands.outcome import Outcome
from engine.dao import host_devices
from engine.dao.models import Host, Vm, VmDevice
from engine.devices import kinds
from engine.errors import Reason
from engine.hostclient import HostClientFactory


@dataclass(frozen=True)
class Params:
    vm_id: str
    hostdev_id: str
    plug: bool


def validate(params: Params, *, vm: Vm, device: VmDevice, device_reasons: list[Reason]) -> list[Reason]:
    """canDo. `device_reasons`: hostdev_rules.check of the host device (asked only to plug)."""
    return common.check_plug(vm, device, plug=params.plug) + (device_reasons if params.plug else [])


def check(s: Session, vm: Vm, dev: VmDevice, host: Host | None, params: Params) -> list[Reason]:
    """canDo with its inputs read from the database; `host` is common.running_host's."""
    reasons: list[Reason] = []
    if params.plug:
        hd = host_devices.get(s, dev.host_device_id) if dev.host_device_id is not None else None
        reasons = hostdev_rules.check(s, vm, hd, dev.host_device_id, row_id=dev.id)
    return validate(params, vm=vm, device=dev, device_reasons=reasons)


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    common.require_admin(principal, "plug or unplug a host device")
    return common.plug_or_unplug(sessions, hosts, vm_id=params.vm_id, device_id=params.hostdev_id, plug=params.plug,
                                 kind=kinds.HOSTDEV, principal=principal,
                                 checks=lambda s, vm, dev, host: check(s, vm, dev, host, params))
