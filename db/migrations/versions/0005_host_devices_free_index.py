"""An index on host_devices (host_id, status): placement reads the free devices of a cluster's hosts
in one grouped query (engine.dao.host_devices.hosts_with_free).

Reviewed by hand against engine.dao.models.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_host_devices_host_id_status"


def upgrade() -> None:
    op.create_index(INDEX, "host_devices", ["host_id", "status"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="host_devices")
