"""services/gateway/shells."""
