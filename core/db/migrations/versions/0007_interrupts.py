"""interrupts: a conversation paused for a person (human in the loop)

Revision ID: 0007
Revises: 0006

``conversations.pending_interrupts`` is NULL while no turn waits for a person; a
JSON list of the pending interrupts (id, value, node, task) while one does, empty
when the turn stopped at a breakpoint (``interrupt_before``/``interrupt_after``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "conversations",
        sa.Column("pending_interrupts", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("conversations", "pending_interrupts")
