"""What the tests share: the real services they need (``services``), a live
stack on free ports (``live``), the in-process fixtures (``fixtures``, loaded
by tests/conftest.py), and helpers for signing in (``auth``), specs
(``specs``), Docker steps (``docker``), event streams (``events``), the
browser (``browser``), the reliability drills and data for the migration tests.
Test modules import from here, never from one another."""
