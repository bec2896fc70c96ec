"""The database side: engines and sessions (``db``), the tables (``models``)
and the Alembic revisions that build them (``schema``, ``migrations/``). The
service layer calls these; they never call back into it."""
