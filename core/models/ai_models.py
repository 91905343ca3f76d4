"""The LLM model registry with its reliability statistics, and the prompt history."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, created_at, updated_at, uuid_pk

# A model that has not been called yet counts as fully successful and instant, so
# it gets tried; its real record replaces that optimism after the first calls.
SUCCESS_RATE_SQL = (
    "CASE WHEN request_count > 0 THEN success_count::float8 / request_count ELSE 1.0 END"
)
AVERAGE_RESPONSE_TIME_SQL = (
    "CASE WHEN request_count > 0 THEN total_response_time / request_count ELSE 0.0 END"
)
SPEED_SCORE_SQL = f"GREATEST(0.0, 1.0 - ({AVERAGE_RESPONSE_TIME_SQL}) / 10.0)"
RELIABILITY_SCORE_SQL = f"0.6 * ({SUCCESS_RATE_SQL}) + 0.4 * ({SPEED_SCORE_SQL})"


class AiModel(Base):
    __tablename__ = "ai_models"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    provider: Mapped[str] = mapped_column(String(100), nullable=False)
    api_endpoint: Mapped[str] = mapped_column(String(500), nullable=False)
    model_id: Mapped[str] = mapped_column(String(200), nullable=False)
    # Name of the environment variable holding the key (a stored credential, below, is the
    # other way: encrypted, per user).
    api_key_env: Mapped[str | None] = mapped_column(String(100))
    # Name of a stored credential (core/secrets/): the calling user's own wins over the
    # shared one, and either over api_key_env.
    credential: Mapped[str | None] = mapped_column(String(100))
    priority: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    success_count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    failure_count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    total_response_time: Mapped[float] = mapped_column(Float, nullable=False, server_default="0")
    request_count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    last_checked: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    context_length: Mapped[int | None] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(Text)
    is_free: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    # Seconds before the router gives up on this model and falls back (None: AGENTRY_LLM_TIMEOUT).
    timeout_seconds: Mapped[float | None] = mapped_column(Float)
    success_rate: Mapped[float] = mapped_column(Float, Computed(SUCCESS_RATE_SQL, persisted=True))
    average_response_time: Mapped[float] = mapped_column(
        Float, Computed(AVERAGE_RESPONSE_TIME_SQL, persisted=True)
    )
    speed_score: Mapped[float] = mapped_column(Float, Computed(SPEED_SCORE_SQL, persisted=True))
    reliability_score: Mapped[float] = mapped_column(
        Float, Computed(RELIABILITY_SCORE_SQL, persisted=True)
    )
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        CheckConstraint(
            "success_count >= 0 AND failure_count >= 0 AND request_count >= 0"
            " AND total_response_time >= 0",
            name="counters_nonnegative",
        ),
        CheckConstraint(
            "success_count + failure_count <= request_count", name="outcomes_within_requests"
        ),
        CheckConstraint("timeout_seconds IS NULL OR timeout_seconds > 0", name="timeout_positive"),
        Index("ix_ai_models_reliability", "is_active", "priority", "reliability_score"),
    )


class PromptHistory(Base):
    __tablename__ = "prompt_history"

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("conversations.id", ondelete="SET NULL")
    )
    prompt_text: Mapped[str] = mapped_column(Text, nullable=False)
    # RESTRICT: a model with history stays (deactivate it instead) so the history stays true.
    selected_model_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("ai_models.id", ondelete="RESTRICT"),
        nullable=False,
        index=True,
    )
    response_text: Mapped[str | None] = mapped_column(Text)
    response_time: Mapped[float | None] = mapped_column(Float)
    success: Mapped[bool] = mapped_column(Boolean, nullable=False, index=True)
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=text("now()"), index=True
    )

    __table_args__ = (
        CheckConstraint("response_time IS NULL OR response_time >= 0", name="time_nonnegative"),
    )
