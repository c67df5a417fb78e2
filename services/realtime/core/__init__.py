"""services/realtime/core."""
