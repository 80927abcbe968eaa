"""Small helpers every layer may use; this package imports nothing of plantcore's."""
