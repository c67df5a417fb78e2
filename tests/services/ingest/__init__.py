"""tests/services/ingest."""
