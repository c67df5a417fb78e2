"""services/realtime/adapters."""
