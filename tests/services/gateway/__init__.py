"""tests/services/gateway."""
