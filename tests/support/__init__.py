"""What the tests share besides fixtures: servers, builders, seed data, clocks, waits.

Test modules import from here, never from each other or from a conftest; the
fixtures themselves live in the conftest.py files.
"""
