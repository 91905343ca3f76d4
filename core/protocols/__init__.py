"""Adapters that speak other ecosystems\x27 protocols (LangGraph Agent Protocol, OpenAI)."""
