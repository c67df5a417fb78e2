"""services/monthly/core."""
