"""Storage: the schema, engines and migrations, and the store the service and dispatcher use."""
