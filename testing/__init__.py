"""Test harness: fault injectors, scenarios, fakes and hostile-input generators.

Used by tests/ and bench/ only; not part of the installed package (pyproject includes
shared, services and wattstream), so hypothesis and fastapi.testclient stay dev-only.
"""
