"""inspect_ai entry point: importing this module registers the project's model providers."""
