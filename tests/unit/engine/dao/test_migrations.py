"""The alembic revisions build exactly the schema the models declare, on SQLite and (when
PLUGBOARD_TEST_DB_URL is set) on PostgreSQL."""
from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from engine.dao import db
from engine.dao.models import Base
from tests import testdb
from tests.unit.engine.conftest import connect_or_fail, tables_dropped


@pytest.fixture
def empty_db_url(tmp_path) -> Iterator[str]:
    """An empty database: a new SQLite file, or the configured PostgreSQL with every table dropped."""
    url = testdb.url() or f"sqlite:///{tmp_path / 'migrated.db'}"
    if not db.is_sqlite(url):
        tables_dropped()
        engine = db.make_engine(url)
        try:
            connect_or_fail(engine)
            db.drop_all(engine)
        finally:
            engine.dispose()
    yield url
    if not db.is_sqlite(url):       # leave no alembic_version behind for the next test's drop/create
        engine = db.make_engine(url)
        try:
            db.drop_all(engine)
        finally:
            engine.dispose()


def _diffs(url: str) -> list:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            return compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()


def test_upgrade_on_an_empty_database_gives_exactly_the_models_schema(empty_db_url):
    db.upgrade(empty_db_url)
    assert _diffs(empty_db_url) == []


def _constraint_names(url: str) -> dict[str, dict[str, set[str]]]:
    engine = db.make_engine(url)
    try:
        insp = inspect(engine)
        return {table: {
            "pk": {insp.get_pk_constraint(table)["name"]},
            "ck": {c["name"] for c in insp.get_check_constraints(table)},
            "fk": {c["name"] for c in insp.get_foreign_keys(table)},
            "uq": {c["name"] for c in insp.get_unique_constraints(table)},
            "ix": {i["name"] for i in insp.get_indexes(table) if not i.get("duplicates_constraint")},
        } for table in Base.metadata.tables}
    finally:
        engine.dispose()


def test_upgraded_database_has_the_models_named_constraints(empty_db_url, tmp_path):
    """compare_metadata looks neither at CHECK constraints nor at constraint names: compare them with
    a reference schema made by create_all from the models (names are the same on every dialect)."""
    reference_url = f"sqlite:///{tmp_path / 'reference.db'}"
    engine = db.make_engine(reference_url)
    db.create_all(engine)
    engine.dispose()
    reference = _constraint_names(reference_url)
    assert reference["vms"]["ck"] == {"ck_vms_status", "ck_vms_machine", "ck_vms_graphics"}
    assert reference["vm_nics"]["fk"] == {"fk_vm_nics_id_vm_devices", "fk_vm_nics_vm_id_vms"}

    db.upgrade(empty_db_url)
    assert _constraint_names(empty_db_url) == reference


def test_check_constraints_are_enforced_after_upgrade(empty_db_url):
    from sqlalchemy.exc import IntegrityError

    from engine.dao.models import Cluster, Vm

    db.upgrade(empty_db_url)
    engine = db.make_engine(empty_db_url)
    sessions = db.make_sessions(engine)
    try:
        with sessions.begin() as s:
            s.add(cluster := Cluster(name="c"))
        with pytest.raises(IntegrityError):
            with sessions.begin() as s:
                s.add(Vm(name="bad", cluster_id=cluster.id, status="flying"))
    finally:
        engine.dispose()


def test_downgrade_to_base_removes_every_table(empty_db_url):
    db.upgrade(empty_db_url)
    engine = db.make_engine(empty_db_url, sqlite_foreign_keys=False)
    try:
        with engine.begin() as conn:
            cfg = db.alembic_config(empty_db_url)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()


def test_one_head_and_revision_files_import_no_models():
    script = ScriptDirectory.from_config(db.alembic_config())
    assert len(script.get_heads()) == 1
    for rev in script.walk_revisions():
        source = open(rev.path, encoding="utf-8").read()
        # A revision is a frozen snapshot: it must not follow later edits of the models.
        assert not re.search(r"^\s*(from|import) engine\b", source, re.M), rev.path


@pytest.mark.skipif(not testdb.url(), reason="replicas share a PostgreSQL database")
def test_replicas_that_migrate_together_take_turns(empty_db_url):
    """Engines started at once all run `upgrade`: one migrates, the others wait and find it done."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda _: db.upgrade(empty_db_url), range(3)))
    assert _diffs(empty_db_url) == []
