"""Conversations and their normalized messages, switches and statistics."""
