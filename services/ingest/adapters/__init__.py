"""services/ingest/adapters."""
