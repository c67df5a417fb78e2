"""tests/services/realtime."""
