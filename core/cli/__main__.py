"""``python -m core.cli``: the same as the ``agentry`` command."""

from core.cli.main import run

run()
