"""What a running server is configured with, for commands run from another shell."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, updated_at


class ServerConfig(Base):
    """One row per kind of server process (``api``): the variable *names* it has set.

    Written at every server start; ``agentry models list`` judges usability from it,
    since the shell the CLI runs in rarely has the server's environment. Never values:
    keys stay out of the database.
    """

    __tablename__ = "server_config"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    updated_at: Mapped[datetime] = updated_at()
