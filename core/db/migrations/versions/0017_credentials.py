"""encrypted credentials (per user or shared) and the model column naming one

Revision ID: 0017
Revises: 0014
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str) -> sa.Column:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "credentials",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("owner_id", sa.UUID(), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.CheckConstraint(
            "name ~ '^[a-z][a-z0-9_.-]{0,99}$'", name=op.f("ck_credentials_name_format")
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_credentials_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credentials")),
    )
    op.create_index(
        "uq_credentials_owner_id_name",
        "credentials",
        ["owner_id", "name"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.create_index("ix_credentials_key_id", "credentials", ["key_id"])
    op.add_column("ai_models", sa.Column("credential", sa.String(length=100), nullable=True))


def downgrade() -> None:
    op.drop_column("ai_models", "credential")
    op.drop_index("ix_credentials_key_id", table_name="credentials")
    op.drop_index("uq_credentials_owner_id_name", table_name="credentials")
    op.drop_table("credentials")
