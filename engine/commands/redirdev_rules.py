"""The canDo rules USB redirection devices share (add, activate): SPICE graphics for spicevmc, and a
free port on the VM's USB controllers for every redirection device that is to be plugged."""
from __future__ import annotations

from sqlalchemy.orm import Session

from engine import reasons as R
from engine import usb
from engine.dao import devices
from engine.dao.models import Vm
from engine.errors import Reason

TYPES = ("spicevmc", "tcp")


def free_ports(s: Session, vm: Vm, *, besides: str | None = None) -> int:
    """USB ports the VM's controllers leave free, not counting device `besides` (the one being plugged)."""
    rows = [d for d in devices.list_for_vm(s, vm.id) if d.id != besides]
    controllers = [d.spec_params or {} for d in rows if d.type == "controller" and d.device == "usb"]
    return usb.free_ports(vm.machine, controllers, sum(1 for d in rows if usb.on_usb(d)))


def check(vm: Vm, kind: str, *, free: int) -> list[Reason]:
    """`free`: the ports left without this device."""
    found: list[Reason] = []
    if kind == "spicevmc" and vm.graphics != "spice":
        found.append(R.spice_required(vm.name, vm.graphics))
    if free < 1:
        found.append(R.no_free_usb_port(vm.name))
    return found
