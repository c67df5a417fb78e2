"""wattstream: services."""
