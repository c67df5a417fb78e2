"""wattstream: tests."""
