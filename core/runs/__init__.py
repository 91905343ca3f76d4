"""Runs beyond one request: crons (scheduled runs) and webhooks of finished runs."""
