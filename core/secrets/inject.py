"""Credentials a tool declares, given to it when a turn runs it."""

from __future__ import annotations

from core.errors import ValidationFailed
from core.runtime.context import current_turn
from core.secrets.keys import keyring
from core.secrets.store import resolve


def turn_credentials(tool: str, names: tuple[str, ...]) -> dict[str, str]:
    """The values of ``names`` for the conversation's user (theirs, else the shared one):
    the same user whose key the model router uses for the turn, even when an admin sends
    the message.

    Raises:
        ValidationFailed: one is missing (the model sees the message and can tell the
            person), or AGENTRY_SECRET_KEY is not set.
    """
    turn = current_turn()
    if not turn.settings.secret_key:
        raise ValidationFailed(
            f"tool {tool} needs the credential {names[0]!r}, but stored credentials are off:"
            " AGENTRY_SECRET_KEY is not set on the server"
        )
    with turn.db.engine.connect() as conn:
        found = resolve(conn, keyring(turn.settings), turn.user_id, names)
    missing = [n for n in names if n not in found]
    if missing:
        raise ValidationFailed(
            f"tool {tool} needs the credential {missing[0]!r}, which you have not stored:"
            f' POST /v1/credentials {{"name": "{missing[0]}", "value": "..."}}'
        )
    return found
