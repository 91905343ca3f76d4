"""protocols: the Agent Protocol store (store_items)

Revision ID: 0005
Revises: 0004

Items of ``langgraph_sdk``'s ``client.store``: JSON values per user, addressed by
namespace (a text array) and key. Their text is indexed in ``search_index``
(entity_type ``store_item``) for search.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "store_items",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("namespace", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("value", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_store_items_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_items")),
    )
    op.create_index(
        "uq_store_items_user_id_namespace_key",
        "store_items",
        ["user_id", "namespace", "key"],
        unique=True,
    )


def downgrade() -> None:
    op.execute("DELETE FROM search_index WHERE entity_type = 'store_item'")
    op.drop_index("uq_store_items_user_id_namespace_key", table_name="store_items")
    op.drop_table("store_items")
