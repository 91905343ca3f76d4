"""Limits: per-key request and turn rates, failed-authentication throttling, body size."""
