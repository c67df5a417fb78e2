"""wattstream: bench."""
