"""The version of a VM's device set (vms.device_seq): every transaction that locks the VM moves it, so
that a plug or unplug can read the VM without a lock and begin only if the version it read is still
there. Existing VMs start at 0.

Reviewed by hand against engine.dao.models.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("vms") as batch:
        batch.add_column(sa.Column("device_seq", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("vms") as batch:
        batch.drop_column("device_seq")
