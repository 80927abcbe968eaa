"""The composition root: settings, wiring, the CLI, the demo; the one package that knows all."""
