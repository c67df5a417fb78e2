"""wattstream: services/ingest."""
