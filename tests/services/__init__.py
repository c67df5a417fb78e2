"""tests/services."""
