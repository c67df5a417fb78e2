"""services/ingest/shells."""
