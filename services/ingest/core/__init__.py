"""services/ingest/core."""
