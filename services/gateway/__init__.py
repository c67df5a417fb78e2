"""wattstream: services/gateway."""
