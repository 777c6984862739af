"""The service: every operation and its rules (no MCP, no HTTP), and the hub that wires a running system."""
