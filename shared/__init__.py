"""wattstream: shared."""
