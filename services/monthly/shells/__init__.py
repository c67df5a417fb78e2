"""services/monthly/shells."""
