"""Activate (plug) or deactivate (unplug) a USB redirection device: live on a running VM
(VM.hotplugRedirdev / VM.hotunplugRedirdev), at the next start of a stopped one."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from engine import reasons as R
from engine.auth import LOCAL_ADMIN, Principal
from engine.commands import common, redirdev_rules
from engine.commands.outcome import Outcome
from engine.dao.models import Host, Vm, VmDevice
from engine.devices import kinds
from engine.errors import Reason
from engine.hostclient import HostClientFactory
from engine.vocab import UP


@dataclass(frozen=True)
class Params:
    vm_id: str
    redirdev_id: str
    plug: bool


def validate(params: Params, *, vm: Vm, device: VmDevice, host: Host | None, free_ports: int) -> list[Reason]:
    found = common.check_plug(vm, device, plug=params.plug)
    if vm.status == UP and host is None:
        found.append(R.host_not_found(vm.run_on_host))
    if params.plug:
        found += redirdev_rules.check(vm, device.device, free=free_ports)
    return found


def check(s: Session, vm: Vm, dev: VmDevice, host: Host | None, params: Params) -> list[Reason]:
    """canDo with its inputs read from the database; `host` is common.running_host's."""
    free = redirdev_rules.free_ports(s, vm, besides=dev.id) if params.plug else 1
    return validate(params, vm=vm, device=dev, host=host, free_ports=free)


def execute(sessions: common.Sessions, hosts: HostClientFactory, params: Params, *,
            principal: Principal = LOCAL_ADMIN) -> Outcome:
    return common.plug_or_unplug(sessions, hosts, vm_id=params.vm_id, device_id=params.redirdev_id,
                                 plug=params.plug, kind=kinds.REDIRDEV, principal=principal,
                                 checks=lambda s, vm, dev, host: check(s, vm, dev, host, params))
