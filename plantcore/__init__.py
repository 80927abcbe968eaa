"""plantcore."""
