"""What reacts to events, time or messages by calling use cases (see docs/architecture.md)."""
