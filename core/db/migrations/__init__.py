"""Alembic environment and core revisions of Agentry, shipped inside the package."""
