"""pgvector: presence, creation and version detection.

The embedded server ships pgvector 0.8.5; servers users bring may run older ones,
without iterative index scans (< 0.8) or inside CVE-2026-3172 (< 0.8.2). Callers
choose strategies by version; ``agentry doctor`` warns with the fix.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from core.errors import ExtensionMissingError

AVAILABLE_SQL = text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
INSTALLED_SQL = text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
CREATE_SQL = text("CREATE EXTENSION IF NOT EXISTS vector")

ITERATIVE_SCAN_SINCE = (0, 8, 0)
# CVE-2026-3172: a buffer overflow in parallel HNSW builds, pgvector 0.6.0-0.8.1.
CVE_2026_3172_FIXED_IN = (0, 8, 2)


def parse_version(raw: str) -> tuple[int, ...]:
    """``"0.6.2"`` → ``(0, 6, 2)``; non-numeric suffixes are ignored."""
    parts = []
    for piece in raw.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def installed_version(conn: Connection) -> tuple[int, ...] | None:
    """The version of pgvector installed in the current database, or None."""
    raw = conn.execute(INSTALLED_SQL).scalar()
    return parse_version(raw) if raw else None


def ensure_vector(conn: Connection) -> tuple[int, ...]:
    """Create the ``vector`` extension when missing and return its version.

    Raises:
        ExtensionMissingError: the server has no pgvector to install.
    """
    if conn.execute(AVAILABLE_SQL).scalar() is None:
        raise ExtensionMissingError(
            "this PostgreSQL server has no pgvector extension: install pgvector "
            "(package postgresql-<version>-pgvector) or unset DATABASE_URL to use "
            "the embedded server"
        )
    conn.execute(CREATE_SQL)
    version = installed_version(conn)
    assert version is not None
    return version


def supports_iterative_scan(version: tuple[int, ...]) -> bool:
    """pgvector >= 0.8 can keep scanning an HNSW index until a filter is satisfied."""
    return version >= ITERATIVE_SCAN_SINCE


def available_version(conn: Connection) -> tuple[int, ...] | None:
    """The newest pgvector the server could install or update to, or None."""
    raw = conn.execute(AVAILABLE_SQL).scalar()
    return parse_version(raw) if raw else None


def version_warning(
    installed: tuple[int, ...], available: tuple[int, ...] | None, server_major: int
) -> str | None:
    """What is wrong with this pgvector and how to fix it, or None when nothing is."""
    problems = []
    if installed < CVE_2026_3172_FIXED_IN:
        problems.append("older than 0.8.2 (CVE-2026-3172: buffer overflow in parallel HNSW builds)")
    if not supports_iterative_scan(installed):
        problems.append("no iterative index scans (filtered search over-fetches instead)")
    if not problems:
        return None
    if available is not None and available >= CVE_2026_3172_FIXED_IN:
        fix = (
            f"the server has {format_version(available)}: run "
            "`ALTER EXTENSION vector UPDATE` in this database"
        )
    else:
        fix = (
            f"install pgvector 0.8.2 or newer on the server (postgresql-{server_major}-pgvector) "
            "and run `ALTER EXTENSION vector UPDATE`, or unset DATABASE_URL to use the "
            "embedded server (pgvector 0.8.5)"
        )
    return f"pgvector {format_version(installed)}: {'; '.join(problems)}; fix: {fix}"


def format_version(version: tuple[int, ...] | None) -> str | None:
    return ".".join(str(p) for p in version) if version else None
