"""Agentry's engine: database, registry, runtime, memory, mechanic, API and CLI."""

__version__ = "0.1.0"
