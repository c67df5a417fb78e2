"""wattstream: wattstream/local."""
