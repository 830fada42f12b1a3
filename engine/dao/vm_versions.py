"""The version of a VM's device set (vms.device_seq), written in one place. Every transaction that locks
a VM moves it (dao.vms.lock); a plug's begin from an unlocked read moves it only from the version that
read saw (dao.devices.begin_transition's `unchanged`), so that a lock in between makes the begin not
take place."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, Update, bindparam, exists, literal, select, update

from engine.dao.models import Vm
from engine.vocab import UP

VMS = cast(Table, Vm.__table__)


@dataclass(frozen=True)
class VmVersion:
    """A running VM as a plug read it without locking it: the version of its device set and the host it
    ran on."""

    vm_id: str
    device_seq: int
    host_id: str


def move(*where: Any) -> Update:
    """``UPDATE vms SET device_seq = device_seq + 1 WHERE <where>``."""
    return update(VMS).where(*where).values(device_seq=VMS.c.device_seq + 1)


def lock() -> Update:
    """The lock's write, on VM :vm_id."""
    return move(VMS.c.id == bindparam("vm_id"))


def unchanged(_table: Any = None) -> Any:
    """``EXISTS (SELECT 1 FROM bump)``, where the WITH ``bump`` moves the version of VM :seen_vm only from
    :seen_seq and while it runs on :seen_host (params); a condition for dao._cas.OneRowUpdate."""
    bump = (move(VMS.c.id == bindparam("seen_vm"), VMS.c.device_seq == bindparam("seen_seq"),
                 VMS.c.status == UP, VMS.c.run_on_host == bindparam("seen_host"))
            .returning(VMS.c.id).cte("bump"))
    return exists(select(literal(1)).select_from(bump))


def params(seen: VmVersion) -> dict[str, Any]:
    """The values of unchanged's parameters."""
    return {"seen_vm": seen.vm_id, "seen_seq": seen.device_seq, "seen_host": seen.host_id}
