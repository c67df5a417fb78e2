"""wattstream: services/realtime."""
