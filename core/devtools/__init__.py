"""Tools for developing and measuring Agentry without external services."""
