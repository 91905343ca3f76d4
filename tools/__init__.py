"""Agent tools: one module per tool, each exposing one typed callable."""
