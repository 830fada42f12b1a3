"""When the host acknowledged a device's transition (vm_devices.plug_acked_at): an unplug the host took
and left pending in the guest is told apart from one whose host call never came back. Reconciliation
waits for the guest on the first; it sends the second again.

Reviewed by hand against engine.dao.models.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("vm_devices") as batch:
        batch.add_column(sa.Column("plug_acked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vm_devices") as batch:
        batch.drop_column("plug_acked_at")
