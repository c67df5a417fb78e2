"""Tests of the wire-contract package ``shared``."""
