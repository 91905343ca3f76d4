"""The domain error hierarchy.

Code raises these; the edges translate them: the CLI prints one line and exits
with :attr:`AgentryError.exit_code`, the HTTP API answers an RFC 9457 problem
document with :attr:`AgentryError.status`.
"""

from __future__ import annotations


class AgentryError(Exception):
    """Base of every error Agentry reports to a person."""

    status: int = 500
    title: str = "Internal error"
    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(AgentryError):
    """A setting is missing or has a bad value."""

    title = "Configuration error"
    exit_code = 2


class DatabaseError(AgentryError):
    """The database cannot be reached or is not usable."""

    status = 503
    title = "Database unavailable"


class ExtensionMissingError(DatabaseError):
    """The PostgreSQL server has no pgvector extension."""

    title = "pgvector missing"


class MigrationError(AgentryError):
    """The schema could not be brought to the expected revision."""

    title = "Migration failed"


class NotFoundError(AgentryError):
    status = 404
    title = "Not found"


class ValidationFailed(AgentryError):
    """Input that passed parsing but breaks a rule of the domain."""

    status = 422
    title = "Invalid input"


class ConflictError(AgentryError):
    status = 409
    title = "Conflict"


class DecisionConflict(AgentryError):
    """A turn waits for a person's decision and the request brings none (or brings one
    while nothing waits). Unlike :class:`ConflictError`, waiting and retrying do not help."""

    status = 409
    title = "Conflict"


class AuthError(AgentryError):
    status = 401
    title = "Unauthorized"


class ForbiddenError(AgentryError):
    status = 403
    title = "Forbidden"


class PayloadTooLargeError(AgentryError):
    status = 413
    title = "Payload too large"


class RateLimited(AgentryError):
    """A limit of the caller (or of its address) is used up; ``retry_after`` seconds."""

    status = 429
    title = "Too many requests"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class ModelUnavailableError(AgentryError):
    """No configured LLM could answer (none usable, or all failed)."""

    status = 503
    title = "No model available"


class ServiceUnavailable(AgentryError):
    """A dependency the request needs (an LLM, a tool binary) is not configured or down."""

    status = 503
    title = "Service unavailable"


class MechanicError(AgentryError):
    """A schema change failed at one of its steps; nothing of it is left applied."""

    status = 500
    title = "Schema change failed"


class PolicyViolation(ValidationFailed):
    """A schema change breaks the migration policy (lint); the report says why and how to fix."""

    title = "Schema change refused by policy"


class EmbeddingMismatchError(ConfigError):
    """The configured embedding model or dimensions differ from what the index holds."""
