"""The identity of a host's agent (hosts.agent_id, its Host.getCapabilities hostId), unique: one agent
is one host, whatever names and URLs reach it. Hosts registered before it get theirs at their next
refresh.

Reviewed by hand against engine.dao.models.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("agent_id", sa.String(36), nullable=True))
        batch.create_unique_constraint("uq_hosts_agent_id", ["agent_id"])


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.drop_constraint("uq_hosts_agent_id", type_="unique")
        batch.drop_column("agent_id")
