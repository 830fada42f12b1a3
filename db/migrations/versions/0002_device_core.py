"""Device core: host-device claims on vm_devices, MAC claims on vm_nics, VM run bookkeeping and
metadata, flavors.

Reviewed by hand against engine.dao.models: batch mode for SQLite (its ALTER TABLE cannot add a
constraint), every constraint named by the metadata's naming convention.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "flavors",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("disk_gb", sa.Integer(), nullable=False),
        sa.Column("extra_specs", sa.JSON(), nullable=False),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flavors")),
        sa.UniqueConstraint("name", name=op.f("uq_flavors_name")),
    )
    with op.batch_alter_table("vms") as batch:
        batch.add_column(sa.Column("meta", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("run_event_seq", sa.Integer(), nullable=True))
    with op.batch_alter_table("vms") as batch:
        batch.alter_column("meta", server_default=None)
    with op.batch_alter_table("vm_devices") as batch:
        batch.add_column(sa.Column("host_device_id", sa.String(36), nullable=True))
        batch.create_foreign_key(op.f("fk_vm_devices_host_device_id_host_devices"), "host_devices",
                                 ["host_device_id"], ["id"], ondelete="SET NULL")
        batch.create_unique_constraint(op.f("uq_vm_devices_host_device_id"), ["host_device_id"])
    with op.batch_alter_table("vm_nics") as batch:
        batch.add_column(sa.Column("claimed_mac", sa.String(17), nullable=True))
        batch.create_unique_constraint(op.f("uq_vm_nics_claimed_mac"), ["claimed_mac"])
    # NICs plugged or in flight claim their MAC. Where two already share one, the older keeps it.
    op.execute("""
        UPDATE vm_nics SET claimed_mac = mac
        WHERE id IN (SELECT d.id FROM vm_devices d WHERE d.is_plugged OR d.plug_state <> 'stable')
          AND id = (SELECT MIN(n2.id) FROM vm_nics n2 JOIN vm_devices d2 ON d2.id = n2.id
                    WHERE n2.mac = vm_nics.mac AND (d2.is_plugged OR d2.plug_state <> 'stable'))
    """)


def downgrade() -> None:
    with op.batch_alter_table("vm_nics") as batch:
        batch.drop_constraint(op.f("uq_vm_nics_claimed_mac"), type_="unique")
        batch.drop_column("claimed_mac")
    with op.batch_alter_table("vm_devices") as batch:
        batch.drop_constraint(op.f("uq_vm_devices_host_device_id"), type_="unique")
        batch.drop_constraint(op.f("fk_vm_devices_host_device_id_host_devices"), type_="foreignkey")
        batch.drop_column("host_device_id")
    with op.batch_alter_table("vms") as batch:
        batch.drop_column("run_event_seq")
        batch.drop_column("meta")
    op.drop_table("flavors")
