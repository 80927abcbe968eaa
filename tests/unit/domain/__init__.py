"""Unit tests of the domain, on the in-memory event store."""
