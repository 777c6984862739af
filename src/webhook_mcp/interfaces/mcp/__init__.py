"""The MCP server: tools over the service."""
