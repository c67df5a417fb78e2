"""services/realtime/shells."""
