"""What a command answers: the id of the entity it acted on and how (REST maps it to 200/201/202)."""
from __future__ import annotations

from dataclasses import dataclass

from engine.dao.models import VmDevice


@dataclass
class Outcome:
    id: str
    pending: bool = False     # the host accepted but has not finished (e.g. the guest has not released a NIC)
    created: bool = False     # a new entity was created
    ids: tuple[str, ...] = ()  # every entity created, when one request creates several (USB controllers)
    # The device row as the command left it (detached; its loaded attributes readable), when it has one
    device: VmDevice | None = None
