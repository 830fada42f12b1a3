"""Queries on flavors. Functions take the session first and never commit."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import literal, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.dao.models import Flavor

__all__ = ["get", "get_for_update", "get_by_name", "list", "add", "delete", "set_extra_specs"]


def get(s: Session, flavor_id: str) -> Flavor | None:
    return s.get(Flavor, flavor_id)


def get_for_update(s: Session, flavor_id: str) -> Flavor | None:
    """The flavor, row-locked until the transaction ends (PostgreSQL), for a read-modify-write of its
    extra specs that a concurrent one must not overwrite. SQLite serializes writers anyway."""
    return s.get(Flavor, flavor_id, with_for_update=True, populate_existing=True)


def get_by_name(s: Session, name: str) -> Flavor | None:
    return s.scalars(select(Flavor).where(Flavor.name == name)).one_or_none()


#: The most flavors one listing answers (Nova's osapi_max_limit).
PAGE_MAX = 1000
#: The default order of a listing: smallest first, then by name.
BY_SIZE = ("memory_mb", "name")


def list(s: Session, *, min_memory_mb: int | None = None, min_disk_gb: int | None = None,  # noqa: A001
         public_only: bool = False, public: bool | None = None, order: Sequence[str] = BY_SIZE,
         descending: bool = False, after: Flavor | None = None, limit: int | None = None) -> Sequence[Flavor]:
    """Flavors, filtered (`public_only`: the caller sees no other; `public`: only public or only private
    ones), ordered by the `order` columns and then the id, all ascending or all `descending`; a page
    of them with `after` (the previous page's last flavor) and `limit`."""
    stmt = select(Flavor)
    if public_only or public is True:
        stmt = stmt.where(Flavor.is_public.is_(True))
    elif public is False:
        stmt = stmt.where(Flavor.is_public.is_(False))
    if min_memory_mb is not None:
        stmt = stmt.where(Flavor.memory_mb >= min_memory_mb)
    if min_disk_gb is not None:
        stmt = stmt.where(Flavor.disk_gb >= min_disk_gb)
    columns = [getattr(Flavor, name) for name in order if name != "id"] + [Flavor.id]
    if after is not None:
        key = tuple_(*columns)
        mark = tuple_(*[literal(getattr(after, c.key), type_=c.type) for c in columns])
        stmt = stmt.where(key < mark if descending else key > mark)
    stmt = stmt.order_by(*[c.desc() if descending else c.asc() for c in columns])
    if limit is not None:
        stmt = stmt.limit(limit)
    return s.scalars(stmt).all()


def add(s: Session, *, name: str, memory_mb: int, vcpus: int, disk_gb: int = 0,
        extra_specs: dict[str, Any] | None = None, is_public: bool = True,
        flavor_id: str | None = None) -> Flavor | None:
    """Insert a flavor and flush it inside a savepoint. None when its name or id is taken -- also by a
    row another transaction committed after this one looked (the unique constraint decides) -- and
    the transaction stays usable, so the caller can find out which."""
    row = Flavor(name=name, memory_mb=memory_mb, vcpus=vcpus, disk_gb=disk_gb,
                 extra_specs=dict(extra_specs or {}), is_public=is_public)
    if flavor_id is not None:
        row.id = flavor_id
    try:
        with s.begin_nested():
            s.add(row)
            s.flush()
    except IntegrityError:
        return None
    return row


def delete(s: Session, flavor_id: str) -> bool:
    """True when a row was deleted. VMs keep the id in `vms.flavor` (as Nova instances keep theirs)."""
    row = s.get(Flavor, flavor_id)
    if row is None:
        return False
    s.delete(row)
    s.flush()
    return True


def set_extra_specs(s: Session, flavor: Flavor, specs: dict[str, str]) -> None:
    """Replace the flavor's extra specs (load it with get_for_update first)."""
    flavor.extra_specs = dict(specs)
    s.flush()
