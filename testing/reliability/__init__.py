"""The reliability suite's harness: fault injectors, consumer runtimes, scenarios.

Shared by ``tests/reliability`` (which assert on the figures) and ``python -m bench
reliability`` (which prints them), so the tests and the benchmark measure the same thing.
"""
