"""The ``agentry`` command line (typer + rich)."""
