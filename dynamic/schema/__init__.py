"""One SQLAlchemy model per entity type, rendered by the mechanic (never hand-edited)."""
