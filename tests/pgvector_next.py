"""A second embedded PostgreSQL 16 with pgvector 0.8, for the iterative-scan tests.

pgserver ships pgvector 0.6, which has no iterative index scans. Debian publishes
pgvector 0.8.0 as a source package: we fetch it with ``apt-get source``, build it
(a few seconds) against a copy of pgserver's PostgreSQL — the wheel carries
``pg_config``, the server headers and PGXS — and start that copy with pgserver's own
machinery pointed at it. Nothing outside ``root`` changes, except that a ``deb-src``
line for Debian's current release is added to apt when none provides the package.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any
from unittest import mock

PGVECTOR_SOURCE = "pgvector=0.8.0-1"
PGVECTOR_VERSION = "0.8.0"
DEB_SRC_LIST = Path("/etc/apt/sources.list.d/agentry-pgvector-src.list")
SOURCE_RELEASE = "trixie"  # the first Debian release with pgvector 0.8


class Unavailable(RuntimeError):
    """pgvector 0.8 cannot be built here (no apt, no network, no compiler)."""


def _run(args: list[str], cwd: Path | None = None) -> None:
    try:
        subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True, timeout=300)
    except FileNotFoundError as exc:
        raise Unavailable(f"{args[0]} is not installed") from exc
    except subprocess.CalledProcessError as exc:
        raise Unavailable(f"{' '.join(args)} failed: {exc.stderr.strip()[-500:]}") from exc


def _archive_uri() -> str:
    """The Debian archive apt already uses (deb822 or one-line sources)."""
    for path in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")):
        for uri in re.findall(r"^URIs:\s*(\S+)", path.read_text(), flags=re.M):
            if "security" not in uri:
                return uri
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt").glob("sources.list.d/*.list")]:
        if path.is_file():
            for match in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", path.read_text(), re.M):
                if "security" not in match.group(1):
                    return match.group(1)
    raise Unavailable("no Debian archive configured for apt")


def _fetch_source(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    command = ["apt-get", "source", "--download-only", "-qq", PGVECTOR_SOURCE]
    try:
        _run(command, cwd=dest)
    except Unavailable:
        if os.geteuid() != 0:
            raise
        DEB_SRC_LIST.write_text(f"deb-src {_archive_uri()} {SOURCE_RELEASE} main\n")
        _run(["apt-get", "update", "-qq"])
        _run(command, cwd=dest)
    archive = next(dest.glob("pgvector_*.orig.tar.gz"), None)
    if archive is None:
        raise Unavailable("apt-get source left no pgvector tarball")
    tree = dest / "pgvector"
    with tarfile.open(archive) as tar:
        top = tar.getnames()[0].split("/")[0]
        tar.extractall(dest, filter="data")
    (dest / top).rename(tree)
    return tree


def build(root: Path) -> Path:
    """A copy of pgserver's PostgreSQL with pgvector 0.8 in ``root``; its bin folder."""
    import pgserver

    package = Path(pgserver.__file__).parent
    install = root / "pgserver" / "pginstall"
    marker = install / "share" / "postgresql" / "extension" / f"vector--{PGVECTOR_VERSION}.sql"
    if marker.is_file():
        return install / "bin"
    if install.exists():
        shutil.rmtree(install)
    shutil.copytree(package / "pginstall", install, symlinks=True)
    libs = root / "pgserver.libs"  # the binaries find their libraries at ../../../pgserver.libs
    if not libs.exists():
        libs.symlink_to(package.parent / "pgserver.libs")
    source = _fetch_source(root / "src")
    pg_config = f"PG_CONFIG={install / 'bin' / 'pg_config'}"
    _run(["make", "-s", "-j2", pg_config], cwd=source)
    _run(["make", "-s", "install", pg_config], cwd=source)
    if not marker.is_file():
        raise Unavailable("pgvector built but its 0.8.0 script is missing")
    return install / "bin"


def start(bin_dir: Path, pgdata: Path) -> Any:
    """Start the copy with pgserver's machinery (Unix socket, unprivileged user as root)."""
    import pgserver._commands
    import pgserver.postgres_server

    pgdata.mkdir(parents=True, exist_ok=True)
    # pgserver resolves its binaries through this module global at call time; stopping
    # the server later works with either copy (pg_ctl only signals the postmaster).
    with (
        mock.patch.object(pgserver._commands, "POSTGRES_BIN_PATH", bin_dir),
        mock.patch.object(pgserver.postgres_server, "POSTGRES_BIN_PATH", bin_dir),
    ):
        return pgserver.get_server(pgdata, cleanup_mode="stop")
