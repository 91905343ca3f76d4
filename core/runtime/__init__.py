"""The agent runtime: graphs on PostgresSaver, handoffs, tools, the model router."""
