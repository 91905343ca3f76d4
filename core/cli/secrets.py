"""``agentry secrets``: the key that encrypts stored credentials."""

from __future__ import annotations

import typer

from core.cli.database import cli_database
from core.cli.edge import console, edge

app = typer.Typer(
    help="The key of stored credentials: make one, rotate to it.", no_args_is_help=True
)


@app.command("new-key")
def new_key_command() -> None:
    """Print a new random key for AGENTRY_SECRET_KEY (nothing is stored)."""
    from core.secrets.keys import new_key

    typer.echo(new_key())


@app.command("rotate")
@edge
def rotate_command() -> None:
    """Re-encrypt every stored credential with AGENTRY_SECRET_KEY.

    Put the previous key in AGENTRY_SECRET_KEYS_OLD and the new one in AGENTRY_SECRET_KEY,
    run this, then drop the old key. One transaction: a credential no key reads stops it
    with nothing changed. Audited (credentials.rotate).
    """
    from core.secrets.keys import keyring
    from core.secrets.store import rotate_keys

    with cli_database() as (db, settings), db.engine.begin() as conn:
        ring = keyring(settings)
        with console.status("re-encrypting credentials..."):
            moved = rotate_keys(conn, ring, actor="cli")
    total = sum(moved.values())
    detail = ", ".join(f"{n} from key {k}" for k, n in moved.items())
    console.print(
        f"re-encrypted {total} credential(s) with key {ring.current_id}"
        + (f" ({detail})" if detail else "")
    )
