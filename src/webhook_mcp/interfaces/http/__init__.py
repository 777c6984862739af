"""The HTTP API beside the MCP transports: ingest and its guard."""
