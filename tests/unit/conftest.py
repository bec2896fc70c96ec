"""Unit tests use the shared in-process fixtures (tests/support/fixtures.py):
a SQLite database in a temp folder and a dispatcher that records."""
