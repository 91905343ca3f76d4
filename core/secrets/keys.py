"""The keyring: ``AGENTRY_SECRET_KEY`` encrypts, it and ``AGENTRY_SECRET_KEYS_OLD`` decrypt.

Fernet (AES-128-CBC with HMAC-SHA256, from ``cryptography``) rather than anything of our
own: it authenticates, so a tampered or wrong-key token fails instead of decrypting to
garbage. Each row stores the id of the key that encrypted it (a short hash of the key, not
the key), so the right old key is picked without trial decryption and ``agentry secrets
rotate`` knows which rows still need re-encrypting.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken

from config import Settings
from core.errors import ConfigError, ConflictError

MISSING_KEY = (
    "credentials are not available: AGENTRY_SECRET_KEY is not set on the server"
    " (make one with `agentry secrets new-key`)"
)


def key_id(key: str) -> str:
    """A public name for a key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(key.strip().encode()).hexdigest()[:16]


def new_key() -> str:
    return Fernet.generate_key().decode()


@dataclass(frozen=True)
class Keyring:
    current_id: str
    keys: dict[str, Fernet]

    def encrypt(self, value: str) -> tuple[str, str]:
        """The token of ``value`` under the current key, and that key's id."""
        return self.keys[self.current_id].encrypt(value.encode()).decode(), self.current_id

    def decrypt(self, token: str, kid: str) -> str:
        """Raises:
        ConfigError: the key ``kid`` is not in the keyring, or the token does not verify.
        """
        fernet = self.keys.get(kid)
        if fernet is None:
            raise ConfigError(
                f"a credential is encrypted with key {kid}, which neither AGENTRY_SECRET_KEY"
                " nor AGENTRY_SECRET_KEYS_OLD holds"
            )
        try:
            return fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ConfigError(f"a credential does not verify under key {kid}") from None


def keyring(settings: Settings) -> Keyring:
    """The keyring of the settings.

    Raises:
        ConflictError: ``AGENTRY_SECRET_KEY`` is not set (409, naming the setting: the
            server's configuration, not the request, is what has to change; a 5xx would
            page an operator for a feature that is simply off).
    """
    if not settings.secret_key:
        raise ConflictError(MISSING_KEY)
    current = settings.secret_key.strip()
    keys = {key_id(k): Fernet(k.strip()) for k in settings.secret_keys_old.split(",") if k.strip()}
    keys[key_id(current)] = Fernet(current)
    return Keyring(key_id(current), keys)
