"""From a clean clone, a non-editable install: `agentry up`, then the mechanic end to end.

The clone is installed as a wheel into a venv of its own (``pip install --no-deps``: the
dependencies come from the test environment's site-packages, added to the new venv's
path, so no package index is needed). It then runs as a new user would: from an
unrelated folder, with a home folder of its own and none of the developer's variables,
so the data home, the deployment repository created in it, squawk, pg_dump, git (no
identity configured) and the docs are all exercised as installed. Then Agentry is
"upgraded" (a new core revision in the installed package): the deployment's change
survives and the mechanic builds on it. The clone and the installed package are never
written.
"""

from __future__ import annotations

import json
import os
import re
import signal
import site
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.cli.mechanic import SPEC_EXAMPLE
from core.db.migrate import core_head

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def install_clone(tmp: Path) -> tuple[Path, Path]:
    """A clean clone of HEAD and a venv with it installed as a wheel; returns both."""
    clone = tmp / "clone"
    run(["git", "clone", "--quiet", str(ROOT), str(clone)])
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    # A plain path line: the test environment's packages, but not its .pth files (which
    # hold the editable install of the working tree).
    (Path(purelib.stdout.strip()) / "test-dependencies.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n"
    )
    run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--no-deps", "--no-build-isolation", "--no-index", str(clone)],
        env={k: v for k, v in os.environ.items() if not k.startswith("PIP_")},
    )  # fmt: skip
    return clone, venv


def user_env(tmp: Path, venv: Path, clone: Path) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        HOME=str(tmp / "home"),  # no git identity, no data of anyone else
        PATH=f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
        AGENTRY_EMBED_INTERVAL="0",  # the embedding model is not what this test is about
        GIT_CONFIG_NOSYSTEM="1",
    )
    (tmp / "home").mkdir()
    return env


def test_clean_clone_install_up_plan_apply(tmp_path: Path) -> None:
    clone, venv = install_clone(tmp_path)
    env = user_env(tmp_path, venv, clone)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    agentry = str(venv / "bin" / "agentry")

    where = run([str(venv / "bin" / "python"), "-c", "import core; print(core.__file__)"], env=env)
    assert where.stdout.startswith(str(venv)), where.stdout  # the wheel, not the working tree
    installed = Path(where.stdout.strip()).parent
    shipped = sorted(p.name for p in (installed / "db" / "migrations" / "versions").glob("*.py"))
    assert "0001_core_schema.py" in shipped  # core revisions ship inside the package
    clone_head = run(["git", "-C", str(clone), "rev-parse", "HEAD"]).stdout
    deployment = tmp_path / "home" / ".local" / "share" / "agentry" / "deployment"

    # Before `agentry up`: one line saying where it looked, nothing created.
    before = subprocess.run(
        [agentry, "users", "list"], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert before.returncode != 0 and "run `agentry up` first" in before.stderr
    assert not (tmp_path / "home" / ".local" / "share" / "agentry" / "pgdata").exists()

    port = free_port()
    server = subprocess.Popen(
        [agentry, "up", "--port", str(port)],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        assert server.poll() is None, server.communicate()[0]
        assert "swagger-ui-bundle.js" in httpx.get(f"http://127.0.0.1:{port}/docs").text

        doctor = subprocess.run(
            [agentry, "doctor", "--json", "--skip-embedding"],
            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
        for name in ("database", "squawk", "git", "git identity", "git remote", "pg_dump"):
            assert checks[name]["ok"], checks[name]

        created = run([agentry, "users", "create", "--email", "me@example.com", "--admin",
                       "--json"], cwd=elsewhere, env=env)  # fmt: skip
        key = json.loads(created.stdout)["api_key"]

        spec = elsewhere / "book.yaml"
        spec.write_text(SPEC_EXAMPLE)
        planned = run([agentry, "mechanic", "plan", str(spec)], cwd=elsewhere, env=env)
        last = planned.stdout.strip().splitlines()[-1]
        match = re.fullmatch(r"next: (agentry mechanic apply [0-9a-f-]{36})", last)
        assert match, planned.stdout
        applied = run(match.group(1).split(), cwd=elsewhere, env=env)
        assert "applied" in applied.stdout

        headers = {"Authorization": f"Bearer {key}"}
        base = f"http://127.0.0.1:{port}/v1/entities/book"
        deadline = time.monotonic() + 30  # the server hears of the apply through NOTIFY
        made = httpx.post(base, json={"title": "Dune", "genre": "fiction"}, headers=headers)
        while made.status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.2)
            made = httpx.post(base, json={"title": "Dune", "genre": "fiction"}, headers=headers)
        assert made.status_code == 201, made.text
        listed = httpx.get(base, headers=headers)
        assert [b["title"] for b in listed.json()["items"]] == ["Dune"]
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
    # The change is committed in the deployment repository made on first start, never pushed
    # (it has no remote), and neither the clone nor the installed package was written.
    log = run(["git", "-C", str(deployment), "log", "--format=%an|%s"]).stdout.splitlines()
    assert [line.split("|")[0] for line in log] == ["Agentry Mechanic"] * 2, log
    assert run(["git", "-C", str(deployment), "remote"]).stdout == ""
    assert (deployment / "agents" / "mechanic.yaml").is_file()
    assert len(list((deployment / "migrations" / "versions").glob("m*.py"))) == 1
    assert (deployment / "dynamic" / "schema" / "book.py").is_file()
    for repo in (clone, deployment):
        assert run(["git", "-C", str(repo), "status", "--porcelain"]).stdout == ""
    assert run(["git", "-C", str(clone), "rev-parse", "HEAD"]).stdout == clone_head
    versions = installed / "db" / "migrations" / "versions"
    assert sorted(p.name for p in versions.glob("*.py")) == shipped

    # A newer Agentry ships a core revision after the deployment's: both heads are upgraded,
    # and the mechanic's next revision follows the deployment's own.
    (versions / "0999_upgrade.py").write_text(NEXT_CORE.format(down=core_head()))
    upgraded = run([agentry, "db", "upgrade"], cwd=elsewhere, env=env).stdout
    assert re.search(r"database at revision 0999\+m[0-9a-f]{12}", upgraded), upgraded
    spec.write_text(
        "{action: add_fields, entity: book, fields: [{name: pages, type: integer}]}"
    )
    planned = run([agentry, "mechanic", "plan", str(spec)], cwd=elsewhere, env=env)
    last = planned.stdout.strip().splitlines()[-1]
    run(last.removeprefix("next: ").split(), cwd=elsewhere, env=env)
    current = run([agentry, "db", "current"], cwd=elsewhere, env=env).stdout
    found = re.search(r"current: (0999\+m[0-9a-f]{12})  head: (\S+)", current)
    assert found and found.group(1) == found.group(2), current
    assert len(list((deployment / "migrations" / "versions").glob("m*.py"))) == 2


NEXT_CORE = '''"""A core revision of a later Agentry."""
from alembic import op

revision = "0999"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE upgrade_marker (id int)")


def downgrade() -> None:
    op.execute("DROP TABLE upgrade_marker")
'''


HEAVY_PREFIXES = ("torch", "nvidia-", "triton", "sentence-transformers", "transformers")


def test_the_main_install_pulls_no_torch_and_no_cuda_from_the_public_index(
    tmp_path: Path,
) -> None:
    clone = tmp_path / "clone"
    run(["git", "clone", "--quiet", str(ROOT), str(clone)])
    # The machine's pip configuration (local mirrors, find-links) switched off: what a
    # user elsewhere gets from the public index.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    report = tmp_path / "report.json"
    run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
         "--report", str(report), str(clone)],
        env=env,
    )  # fmt: skip
    installed = json.loads(report.read_text())["install"]
    names = sorted(i["metadata"]["name"].lower().replace("_", "-") for i in installed)
    assert "onnxruntime" in names and "squawk-cli" in names
    assert [n for n in names if n.startswith(HEAVY_PREFIXES)] == []
    urls = [i["download_info"]["url"] for i in installed if i["metadata"]["name"] != "agentry"]
    assert all(u.startswith("https://") for u in urls), urls  # the index, not a local mirror
