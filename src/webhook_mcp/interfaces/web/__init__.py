"""The web dashboard served at ``/ui/`` next to the MCP transport."""
