"""SQLAlchemy models of the core schema (DESIGN §3).

Importing this package registers every core table on :data:`Base.metadata`,
which is what Alembic compares against.
"""

from core.models.ai_models import AiModel, PromptHistory
from core.models.audit import AuditLog
from core.models.base import Base
from core.models.conversations import AgentSwitch, Conversation, ConversationStatus, Message
from core.models.credentials import Credential
from core.models.crons import Cron, WebhookDelivery
from core.models.keyword import (
    SearchKeywordStats,
    SearchPosting,
    SearchPostingBlock,
    SearchTerm,
    SearchTermDelta,
)
from core.models.limits import RateBucket, UserLimit
from core.models.mechanic import MechanicChange
from core.models.memory_blocks import MemoryBlock, MemoryBlockVersion
from core.models.registry import Agent, AssistantVersion, EntityType, Tool
from core.models.runs import Run, RunEvent
from core.models.search import SearchEmbeddingSpace, SearchIndex
from core.models.server import ServerConfig
from core.models.store import StoreItem
from core.models.users import User, UserRole

__all__ = [
    "Agent",
    "AgentSwitch",
    "AiModel",
    "AssistantVersion",
    "AuditLog",
    "Base",
    "Conversation",
    "ConversationStatus",
    "Credential",
    "Cron",
    "EntityType",
    "MechanicChange",
    "MemoryBlock",
    "MemoryBlockVersion",
    "Message",
    "PromptHistory",
    "RateBucket",
    "Run",
    "RunEvent",
    "SearchEmbeddingSpace",
    "SearchIndex",
    "SearchKeywordStats",
    "SearchPosting",
    "SearchPostingBlock",
    "SearchTerm",
    "SearchTermDelta",
    "ServerConfig",
    "StoreItem",
    "Tool",
    "User",
    "UserLimit",
    "UserRole",
    "WebhookDelivery",
]
