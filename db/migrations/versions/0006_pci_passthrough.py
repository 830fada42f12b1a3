"""PCI passthrough by alias: the configured aliases, an index for placement by vendor/product, and the
spare root ports of a running q35 VM.

- pci_aliases: written from the engine's configuration at every start (several rows may share a name).
- host_devices (vendor_id, product_id, status, allowed, present, capability, host_id): placement reads
  an alias's free devices across hosts from the index alone (bench/placement.py).
- vms (run_on_host, status): placement orders the candidate hosts by their running VMs, counted per
  host from this index instead of a scan of every VM for each candidate (bench/placement.py).
- vms.pcie_ports_base: what the free hot-plug ports of a running q35 VM are counted from.

Reviewed by hand against engine.dao.models.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_host_devices_pci_placement"
LOAD_INDEX = "ix_vms_run_on_host_status"


def upgrade() -> None:
    op.create_table(
        "pci_aliases",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("vendor_id", sa.String(8), nullable=False),
        sa.Column("product_id", sa.String(8), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pci_aliases"),
        sa.UniqueConstraint("name", "vendor_id", "product_id", name="uq_pci_aliases_name_vendor_id_product_id"),
    )
    op.create_index("ix_pci_aliases_name", "pci_aliases", ["name"])
    op.create_index(INDEX, "host_devices", ["vendor_id", "product_id", "status", "allowed", "present", "capability",
                                            "host_id"])
    op.create_index(LOAD_INDEX, "vms", ["run_on_host", "status"])
    with op.batch_alter_table("vms") as batch:
        batch.add_column(sa.Column("pcie_ports_base", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vms") as batch:
        batch.drop_column("pcie_ports_base")
    op.drop_index(LOAD_INDEX, table_name="vms")
    op.drop_index(INDEX, table_name="host_devices")
    op.drop_index("ix_pci_aliases_name", table_name="pci_aliases")
    op.drop_table("pci_aliases")
