"""wattstream: wattstream."""
