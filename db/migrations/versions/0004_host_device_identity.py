"""Host devices by identity: a device pulled and plugged back (new node-device name, new bus/device
numbers) is found again by its port path, ids and serial (a PCI function by its address and ids); a
device a VM holds that vanished from its host stays with the VM, flagged (present = false); a failed
attach keeps its error on the device.

Reviewed by hand against engine.dao.models: batch mode for SQLite, constraints named by the
metadata's naming convention. Rows from before take an identity computed the same way as the engine
computes it (engine.dao.host_devices.identity).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-09
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IDENTITY = ("capability || ':' || COALESCE(CASE WHEN capability = 'pci' THEN pci_address ELSE port_path END, name)"
            " || ':' || LOWER(vendor_id) || ':' || LOWER(product_id) || ':' || COALESCE(serial, '')")


def upgrade() -> None:
    with op.batch_alter_table("host_devices") as batch:
        batch.add_column(sa.Column("identity", sa.String(255), nullable=True))
        batch.add_column(sa.Column("present", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("last_error", sa.JSON(none_as_null=True), nullable=True))
    op.execute(f"UPDATE host_devices SET identity = {IDENTITY}")
    with op.batch_alter_table("host_devices") as batch:
        batch.alter_column("identity", existing_type=sa.String(255), nullable=False)
        batch.alter_column("present", existing_type=sa.Boolean(), server_default=None)
        batch.drop_constraint(op.f("uq_host_devices_host_id_name"), type_="unique")
        batch.create_unique_constraint(op.f("uq_host_devices_host_id_identity"), ["host_id", "identity"])
        batch.create_index("ix_host_devices_host_id_name", ["host_id", "name"])


def downgrade() -> None:
    with op.batch_alter_table("host_devices") as batch:
        batch.drop_index("ix_host_devices_host_id_name")
        batch.drop_constraint(op.f("uq_host_devices_host_id_identity"), type_="unique")
        batch.create_unique_constraint(op.f("uq_host_devices_host_id_name"), ["host_id", "name"])
        batch.drop_column("last_error")
        batch.drop_column("present")
        batch.drop_column("identity")
