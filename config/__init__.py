"""Agentry configuration: one settings class, loaded once (see :func:`get_settings`)."""

from config.settings import Settings, get_settings, load_settings, reset_settings

__all__ = ["Settings", "get_settings", "load_settings", "reset_settings"]
