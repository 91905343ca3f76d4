"""first hour: server_config, mechanic_changes.rollback_commit

Revision ID: 0012
Revises: 0010

``agentry models list`` runs in a shell that rarely has the server's environment; the
server records which key variables it has (names only, never values) at every start.
A rolled-back change keeps the commit that reverted it, next to the one that applied it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "server_config",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("config", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_server_config")),
    )
    op.add_column("mechanic_changes", sa.Column("rollback_commit", sa.String(length=64)))


def downgrade() -> None:
    op.drop_column("mechanic_changes", "rollback_commit")
    op.drop_table("server_config")
