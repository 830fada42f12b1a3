"""Detach a host device from a VM for good: its row goes and the device is free again (available, or
removed if it left the host meanwhile). A stopped VM's definition simply loses it (seed 002's "detach
from an inactive domain"); on a running VM it must be deactivated (hot-unplugged) first. Admins only."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common
from engine.commands.outcome import Outcome
from engine.dao.models import Vm, VmDevice
from engine.devices import kinds
from engine.errors import Reason
from engine.hostclient import HostClientFactory


@dataclass(frozen=True)
class Params:
    vm_id: str
    hostdev_id: str


def validate(params: Params, *, vm: Vm, device: VmDevice) -> list[Reason]:
    return common.check_remove(vm, device)


def check(s: Session, vm: Vm, params: Params) -> list[Reason]:
    """canDo with its inputs read from the database (what execute checks; nothing changes)."""
    return validate(params, vm=vm, device=common.load_device(s, vm, params.hostdev_id, kinds.HOSTDEV))


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    common.require_admin(principal, "detach a host device from a VM")
    return common.remove_device(sessions, vm_id=params.vm_id, device_id=params.hostdev_id, kind=kinds.HOSTDEV,
                                principal=principal, checks=lambda s, vm: check(s, vm, params))
