"""The PCI aliases of the engine's configuration, as the commands read them. Functions take the session
first and never commit."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from engine.dao.models import PciAlias


class AliasLike(Protocol):
    """An alias as engine.pci_aliases parses it."""

    @property
    def name(self) -> str: ...
    @property
    def vendor_id(self) -> str: ...
    @property
    def product_id(self) -> str: ...


def replace_all(s: Session, aliases: Iterable[AliasLike]) -> None:
    """The configuration's aliases, and only them (written when the engine starts)."""
    s.execute(delete(PciAlias))
    s.add_all(PciAlias(name=a.name, vendor_id=a.vendor_id, product_id=a.product_id) for a in aliases)
    s.flush()


def list_all(s: Session) -> Sequence[PciAlias]:
    return s.scalars(select(PciAlias).order_by(PciAlias.name, PciAlias.vendor_id, PciAlias.product_id)).all()


def names(s: Session) -> set[str]:
    return set(s.scalars(select(PciAlias.name).distinct()))
