"""Encrypted credentials: the keyring (AGENTRY_SECRET_KEY and old keys) and the store."""
