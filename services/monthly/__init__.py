"""wattstream: services/monthly."""
