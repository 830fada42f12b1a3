"""Helpers shared by the compare-and-set queries."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final, Generic, Protocol, TypeVar, cast

from sqlalchemy.engine import CursorResult, Result
from sqlalchemy import Executable, Table, bindparam, exists, insert as sql_insert, literal, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key


class _Keep:
    """Sentinel: leave this column as it is."""

    _instance: "_Keep | None" = None

    def __new__(cls) -> "_Keep":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "KEEP"

    def __bool__(self) -> bool:
        return False


KEEP: Final = _Keep()


def update_one(s: Session, model: Any, pk: Any, values: dict[str, Any], *where: Any) -> bool:
    """One row's UPDATE (a compare-and-set when `where` is given): True when the row matched.

    A bulk UPDATE bypasses the identity map, so a copy of the row the session already holds takes
    the values the database wrote, read back by RETURNING in the same statement rather than by a
    second SELECT (values may be SQL expressions, such as a column copied from another). A copy whose
    UPDATE did not match is expired: it is read again, as the row now is, when next used."""
    columns = [getattr(model, name) for name in values]
    stmt = (update(model).where(model.id == pk, *where).values(**values).returning(*columns)
            .execution_options(synchronize_session=False))
    row = s.execute(stmt).first()
    obj = s.identity_map.get(identity_key(model, pk))
    if obj is not None:
        if row is None:
            s.expire(obj)
        else:
            for name, value in zip(values, row):
                set_committed_value(obj, name, value)
    return row is not None


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched. Session.execute answers those with a CursorResult but is
    typed as returning the Result base class, which has no rowcount."""
    return cast(CursorResult[Any], result).rowcount


S = TypeVar("S", bound=Executable)


class Prebuilt(Generic[S]):
    """A statement built on its first use and reused, its parameters bound by name at each execution,
    for the queries every plug and unplug runs. Building a statement and its cache key costs more
    than running it (about 0.5 ms per statement on a small host); a statement made once has its cache
    key memoized, so each execution goes straight to the compiled form."""

    def __init__(self, build: Callable[[], S]) -> None:
        self._build = build

    @cached_property
    def statement(self) -> S:
        return self._build()


class RowToInsert(Protocol):
    """A row that goes in with a compare-and-set (audit.Event)."""

    @property
    def table(self) -> Table: ...

    @property
    def values(self) -> Mapping[str, Any]: ...

    def write(self, s: Session) -> Any: ...


class OneRowUpdate:
    """update_one for a fixed shape, prebuilt: ``UPDATE <table> SET <set> WHERE id = :pk AND <guard
    column> = :value ... RETURNING <set>``, run as a Core statement (no ORM bulk-update machinery).
    `set` names the columns whose values each call gives; `expressions` the columns set to a fixed SQL
    expression of the row (e.g. vm_nics.claimed_mac = vm_nics.mac); `guards` the columns compared for
    equality with a value each call gives; `condition` one more fixed SQL condition (made from the
    table). Like update_one, a copy of the row the session holds takes the values written, or is
    expired when the row did not match; pending changes are flushed first, as an ORM statement would
    autoflush them."""

    def __init__(self, model: Any, set: Iterable[str] = (), *, guards: Iterable[str] = (),  # noqa: A002
                 expressions: Mapping[str, Callable[[Any], Any]] | None = None,
                 condition: Callable[[Any], Any] | None = None) -> None:
        self.model = model
        self.set = tuple(set)
        self.guards = tuple(guards)
        self.expressions = dict(expressions or {})
        self.condition = condition
        self.returned = self.set + tuple(self.expressions)
        self._keys: list[str] = []
        self._prebuilt = Prebuilt(self._build)
        self._composites: dict[Any, Any] = {}

    def _build(self) -> Any:
        table = self.model.__table__
        values: dict[str, Any] = {name: bindparam(f"set_{name}", type_=table.c[name].type) for name in self.set}
        values.update({name: make(table) for name, make in self.expressions.items()})
        where = [table.c.id == bindparam("pk", type_=table.c.id.type)]
        where += [table.c[name] == bindparam(f"guard_{name}", type_=table.c[name].type) for name in self.guards]
        if self.condition is not None:
            where.append(self.condition(table))
        columns = [table.c[name] for name in self.returned]
        self._keys = [self.model.__mapper__.get_property_by_column(c).key for c in columns]
        return update(table).where(*where).values(values).returning(*columns)

    def _composite(self, insert: tuple[Table, tuple[str, ...]] | None, also: Sequence["RowWrite"]) -> Any:
        """``WITH cas AS (<the UPDATE>), ins AS (INSERT INTO <table> (<columns>) SELECT <values> FROM cas),
        also0 AS (UPDATE <other> SET ... WHERE id = :pk AND EXISTS (SELECT 1 FROM cas)) ... SELECT <set>
        FROM cas``: the row goes in, and the other rows are written, when and only when the UPDATE
        matched."""
        cas = self._prebuilt.statement.cte("cas")
        stmt = select(*cas.c)
        if insert is not None:
            table, columns = insert
            row = select(*[bindparam(f"ins_{name}", type_=table.c[name].type) for name in columns]).select_from(cas)
            stmt = stmt.add_cte(sql_insert(table).from_select(list(columns), row).cte("ins"))
        for i, write in enumerate(also):
            other = write.update.model.__table__
            values = {name: bindparam(f"also{i}_{name}", type_=other.c[name].type) for name in write.values}
            values.update({name: make(other) for name, make in write.update.expressions.items()})
            stmt = stmt.add_cte(update(other).where(other.c.id == bindparam(f"also{i}_pk", type_=other.c.id.type),
                                                    exists(select(literal(1)).select_from(cas)))
                                .values(values).cte(f"also{i}"))
        return stmt

    def __call__(self, s: Session, pk: Any, values: Mapping[str, Any] | None = None, *,
                 insert: RowToInsert | None = None, also: Sequence["RowWrite"] = (),
                 bound: Mapping[str, Any] | None = None, **guards: Any) -> bool:
        """True when the row matched (and was updated). `insert`: a row that goes in with the update, and
        `also`: rows of other tables written with it (RowWrite), only if it matched -- in the same
        statement on PostgreSQL (a data-modifying WITH: one round trip, not several), by statements of
        their own after it elsewhere (SQLite has no such WITH). `bound`: the values of the parameters
        `condition` names."""
        if s.autoflush:
            s.flush()
        params = {"pk": pk, **{f"set_{name}": (values or {})[name] for name in self.set},
                  **{f"guard_{name}": guards[name] for name in self.guards}, **(bound or {})}
        if (insert is not None or also) and s.get_bind().dialect.name == "postgresql":
            shape = (insert.table.name if insert else None, tuple(insert.values) if insert else (),
                     tuple((w.update.model.__tablename__, tuple(w.values)) for w in also))
            if shape not in self._composites:
                self._composites[shape] = self._composite((insert.table, shape[1]) if insert else None, also)
            if insert is not None:
                params.update({f"ins_{name}": value for name, value in insert.values.items()})
            for i, write in enumerate(also):
                params.update({f"also{i}_pk": pk, **{f"also{i}_{k}": v for k, v in write.values.items()}})
            row = s.execute(self._composites[shape], params).first()
            if row is not None:
                for write in also:
                    write.took_effect(s, pk)
        else:
            row = s.execute(self._prebuilt.statement, params).first()
            if row is not None:
                for write in also:
                    write(s, pk)
                if insert is not None:
                    insert.write(s)
        obj = s.identity_map.get(identity_key(self.model, pk))
        if obj is not None:
            if row is None:
                s.expire(obj)
            else:
                for key, value in zip(self._keys, row):
                    set_committed_value(obj, key, value)
        return row is not None


@dataclass(frozen=True, eq=False)     # compared and hashed by identity: a kind holds one
class RowWrite:
    """Plain values (and the update's fixed expressions of the row) written to one row of another table
    whose id is the compare-and-set's (a NIC's MAC released or claimed with its device's transition):
    with it, in its statement where the database allows."""

    update: OneRowUpdate
    values: Mapping[str, Any]

    def __post_init__(self) -> None:
        if set(self.values) != set(self.update.set) or self.update.guards or self.update.condition is not None:
            raise ValueError("a RowWrite sets exactly its update's plain columns, unguarded")

    def __call__(self, s: Session, pk: Any) -> bool:
        return self.update(s, pk, self.values)

    def took_effect(self, s: Session, pk: Any) -> None:
        """Written inside another statement: a copy of the row the session holds takes the values (and
        forgets the columns an expression set: it reads them again if it needs them)."""
        obj = s.identity_map.get(identity_key(self.update.model, pk))
        if obj is not None:
            for name, value in self.values.items():
                set_committed_value(obj, self._key(name), value)
            if self.update.expressions:
                s.expire(obj, [self._key(name) for name in self.update.expressions])

    def _key(self, column: str) -> str:
        return self.update.model.__mapper__.get_property_by_column(self.update.model.__table__.c[column]).key
