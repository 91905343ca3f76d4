"""The built-in agents (YAML), copied into a new deployment repository."""
