"""The tools, grouped by what they act on; each module has ``register(server, slot)``."""
