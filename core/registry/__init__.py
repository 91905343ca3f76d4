"""Registries: agents, tools, models; files are versioned, rows are the truth at run time."""
