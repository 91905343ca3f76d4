"""Users and API keys: keys are shown once and stored as SHA-256 hashes."""
