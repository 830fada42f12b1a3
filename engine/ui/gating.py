"""What each button may do now: the engine's canDo read (engine.commands.allowed.for_vm, the same
answer GET /api/vms/{id}/allowed gives), wrapped for the templates. No rule is decided here."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from engine.commands import allowed
from engine.dao.models import Host
from engine.ui.context import principal, sessions


@dataclass(frozen=True)
class Gate:
    allowed: bool
    reasons: tuple[dict[str, Any], ...] = ()

    @property
    def why(self) -> str:
        return " ".join(r.get("message", "") for r in self.reasons)

    @property
    def codes(self) -> str:
        return " ".join(r.get("code", "") for r in self.reasons)


#: An action the answer does not name is not offered.
NOT_OFFERED = Gate(False, ({"code": "NOT_OFFERED", "message": "This action is not available.", "vars": {}},))


def _gate(verdict: dict[str, Any] | None) -> Gate:
    if not verdict:
        return NOT_OFFERED
    return Gate(bool(verdict.get("allowed")), tuple(verdict.get("reasons") or ()))


@dataclass(frozen=True)
class Gates:
    answer: dict[str, Any] = field(default_factory=dict)

    def vm(self, action: str) -> Gate:
        return _gate(self.answer.get("vm", {}).get(action))

    def host(self, action: str) -> Gate:
        return _gate(self.answer.get("host", {}).get(action))

    def device(self, device_id: str, action: str) -> Gate:
        return _gate(self.answer.get("devices", {}).get(device_id, {}).get(action))


def for_vm(vm_id: str) -> Gates:
    return Gates(allowed.for_vm(sessions(), principal(), vm_id))


def for_hosts(s: Session, hosts: Sequence[Host]) -> dict[str, Gates]:
    return {host_id: Gates({"host": answer}) for host_id, answer in allowed.for_hosts(s, hosts).items()}
