"""tests/services/monthly."""
