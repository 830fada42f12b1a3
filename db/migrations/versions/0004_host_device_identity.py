"""Host devices by identity, with Nova's integer ids.

- A device pulled and plugged back (new node-device name, new bus/device numbers) is found again by
  its identity: a USB device's port path, ids and serial; a PCI function's address and ids.
- A device a VM holds that vanished from its host stays with the VM, flagged (present = false).
- A failed attach keeps its error on the device (last_error).
- Ids are integers, as the seeds' APIs show them (`{"id": 1}` in attach_usb_devices, usb_device_stats).

The engine filled host_devices only from this revision on (nothing synced the inventory before), so
the table is made anew; a hostdev row's link to it (vm_devices.host_device_id) becomes an integer.

Reviewed by hand against engine.dao.models: batch mode for SQLite, constraints named by the
metadata's naming convention.

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

TIMESTAMP = sa.DateTime(timezone=True)
STATUSES = "status IN ('available', 'claimed', 'allocated', 'unavailable', 'removed')"
FK = "fk_vm_devices_host_device_id_host_devices"


def _host_devices(id_type: sa.types.TypeEngine, *, identity: bool) -> None:
    columns = [
        sa.Column("id", id_type, nullable=False, autoincrement=identity),
        sa.Column("host_id", sa.String(36), nullable=False),
        *([sa.Column("identity", sa.String(255), nullable=False)] if identity else []),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("capability", sa.String(16), nullable=False),
        sa.Column("vendor_id", sa.String(8), nullable=False),
        sa.Column("product_id", sa.String(8), nullable=False),
        sa.Column("vendor_name", sa.String(255), nullable=True),
        sa.Column("product_name", sa.String(255), nullable=True),
        sa.Column("bus", sa.Integer(), nullable=True),
        sa.Column("device", sa.Integer(), nullable=True),
        sa.Column("port_path", sa.String(64), nullable=True),
        sa.Column("serial", sa.String(128), nullable=True),
        sa.Column("pci_address", sa.String(16), nullable=True),
        sa.Column("iommu_group", sa.Integer(), nullable=True),
        sa.Column("driver", sa.String(64), nullable=True),
        sa.Column("parent", sa.String(128), nullable=True),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("vm_id", sa.String(36), nullable=True),
        *([sa.Column("present", sa.Boolean(), nullable=False),
           sa.Column("last_error", sa.JSON(none_as_null=True), nullable=True)] if identity else []),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_host_devices")),
        (sa.UniqueConstraint("host_id", "identity", name=op.f("uq_host_devices_host_id_identity")) if identity
         else sa.UniqueConstraint("host_id", "name", name=op.f("uq_host_devices_host_id_name"))),
        sa.ForeignKeyConstraint(["host_id"], ["hosts.id"], name=op.f("fk_host_devices_host_id_hosts"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["vm_id"], ["vms.id"], name=op.f("fk_host_devices_vm_id_vms"), ondelete="SET NULL"),
        sa.CheckConstraint(STATUSES, name=op.f("ck_host_devices_status")),
    ]
    op.create_table("host_devices", *columns)
    op.create_index(op.f("ix_host_devices_host_id"), "host_devices", ["host_id"])
    op.create_index(op.f("ix_host_devices_vm_id"), "host_devices", ["vm_id"])
    if identity:
        op.create_index("ix_host_devices_host_id_name", "host_devices", ["host_id", "name"])


def _relink(id_type: sa.types.TypeEngine, old_type: sa.types.TypeEngine) -> None:
    """vm_devices.host_device_id takes the new id type (every link is dropped with the old rows)."""
    with op.batch_alter_table("vm_devices") as batch:
        batch.drop_constraint(op.f(FK), type_="foreignkey")
    op.execute("UPDATE vm_devices SET host_device_id = NULL")
    op.drop_table("host_devices")
    with op.batch_alter_table("vm_devices") as batch:
        batch.alter_column("host_device_id", existing_type=old_type, type_=id_type, existing_nullable=True,
                           postgresql_using="NULL")


def upgrade() -> None:
    _relink(sa.Integer(), sa.String(36))
    _host_devices(sa.Integer(), identity=True)
    with op.batch_alter_table("vm_devices") as batch:
        batch.create_foreign_key(op.f(FK), "host_devices", ["host_device_id"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    _relink(sa.String(36), sa.Integer())
    _host_devices(sa.String(36), identity=False)
    with op.batch_alter_table("vm_devices") as batch:
        batch.create_foreign_key(op.f(FK), "host_devices", ["host_device_id"], ["id"], ondelete="SET NULL")
