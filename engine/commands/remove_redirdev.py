"""Remove a USB redirection device: when the VM is down or the device is deactivated (unplug it first)."""
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
    redirdev_id: str


def validate(params: Params, *, vm: Vm, device: VmDevice) -> list[Reason]:
    return common.check_remove(vm, device)


def check(s: Session, vm: Vm, params: Params) -> list[Reason]:
    """canDo with its inputs read from the database (what execute checks; nothing changes)."""
    return validate(params, vm=vm, device=common.load_device(s, vm, params.redirdev_id, kinds.REDIRDEV))


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    return common.remove_device(sessions, vm_id=params.vm_id, device_id=params.redirdev_id, kind=kinds.REDIRDEV,
                                principal=principal, checks=lambda s, vm: check(s, vm, params))
