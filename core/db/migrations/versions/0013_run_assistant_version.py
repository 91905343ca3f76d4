"""run assistant version: the version of the assistant (agent) a run used

Revision ID: 0013
Revises: 0012

``runs.assistant_version`` is set when a worker starts (or takes over) the run, from
the registry the run's turn is compiled from: the version that actually answered,
not the one current when the run was queued. NULL while the run has not started.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("assistant_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("runs", "assistant_version")
