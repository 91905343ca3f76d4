"""Core revisions: shipped with the package (the mechanic's live in the deployment repository)."""
