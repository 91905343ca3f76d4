"""``agentry doctor``'s view of stored credentials: is the key set, can every row be read."""

from __future__ import annotations

from sqlalchemy import Connection, text

from config import Settings
from core.health import Check
from core.secrets.keys import keyring

TABLE_SQL = text("SELECT to_regclass('credentials') IS NOT NULL")
COUNT_BY_KEY_SQL = text("SELECT key_id, count(*) AS n FROM credentials GROUP BY key_id")
NEW_KEY_HINT = "make one with `agentry secrets new-key`"


def secret_check(settings: Settings, conn: Connection | None) -> Check:
    """AGENTRY_SECRET_KEY and the credentials it has to read.

    Unset with nothing stored is fine (the feature is off); unset with credentials stored,
    or rows under a key neither AGENTRY_SECRET_KEY nor AGENTRY_SECRET_KEYS_OLD holds, fail.
    """
    by_key: dict[str, int] = {}
    if conn is not None and conn.execute(TABLE_SQL).scalar():
        by_key = {r.key_id: int(r.n) for r in conn.execute(COUNT_BY_KEY_SQL)}
    total = sum(by_key.values())
    if not settings.secret_key:
        if total:
            return Check(
                "secret key",
                False,
                f"AGENTRY_SECRET_KEY is not set, but {total} credential(s) are stored:"
                " set the key they were encrypted with",
            )
        return Check(
            "secret key",
            True,
            "AGENTRY_SECRET_KEY is not set: stored credentials are off (the credential"
            f" routes answer 409); {NEW_KEY_HINT}",
        )
    ring = keyring(settings)
    unknown = sorted(k for k in by_key if k not in ring.keys)
    if unknown:
        return Check(
            "secret key",
            False,
            f"credentials under key(s) {', '.join(unknown)} cannot be read: add the old key to"
            " AGENTRY_SECRET_KEYS_OLD",
        )
    stale = total - by_key.get(ring.current_id, 0)
    detail = f"key {ring.current_id}; {total} credential(s) stored"
    if stale:
        detail += f", {stale} under an old key (run `agentry secrets rotate`)"
    return Check("secret key", True, detail, {"key_id": ring.current_id, "stale": stale})
