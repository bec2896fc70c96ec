"""The Alembic script directory of the jobsys schema (see ``jobsys.store.schema``)."""
