"""The LangGraph Agent Protocol surface (what ``langgraph_sdk`` calls), at the root paths."""
