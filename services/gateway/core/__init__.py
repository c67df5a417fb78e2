"""services/gateway/core."""
