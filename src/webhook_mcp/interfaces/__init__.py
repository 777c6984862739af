"""The doors: the MCP server, the HTTP API and the command line, each a thin layer over the service."""
