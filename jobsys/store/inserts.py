"""New rows written with one Core INSERT per table instead of the ORM's unit of work.

A submit stores a job, its tags, steps, items, task rows and audit entry; the
ORM's flush sorts them, tracks their state and fetches defaults, and that took
about 40% of a submit's time. The rows here are known to be new and are given
parents first, so none of that work is needed: each row's columns are read
from the (transient) object, the columns it leaves unset get their Python
default (written back onto the object too, as a flush would), and each table
gets one ``executemany``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, inspect
from sqlalchemy.orm import Session

from jobsys.store.models import Base, Job


def insert_rows(session: Session, rows: Iterable[Base]) -> None:
    """Insert new rows in ``session``'s transaction, tables in the order their
    first row comes (so give parents before children: a job before its steps).

    A row's foreign keys must be set on it (relationships are not followed),
    and a row must not be in the session as well, or it would be written twice."""
    batches: dict[tuple[Table, tuple[str, ...]], list[dict[str, Any]]] = {}
    for row in rows:
        values = column_values(row)
        table: Table = row.__table__  # type: ignore[assignment]
        batches.setdefault((table, tuple(values)), []).append(values)
    if not batches:
        return
    connection = session.connection()
    for (table, _), values in batches.items():
        connection.execute(table.insert(), values)


def job_rows(job: Job) -> list[Base]:
    """A new job's rows, parents first: the job, its tags, its steps and their
    item lists (each made with its foreign keys set, see ``service.jobs``)."""
    rows: list[Base] = [job, *job.tag_rows, *job.steps]
    rows += [step.payload for step in job.steps if step.payload is not None]
    return rows


def column_values(row: Base) -> dict[str, Any]:
    """The row's column values as an INSERT takes them.

    A column the object never set is filled from its default, if it has one,
    and otherwise left out, as the ORM does: left out it is SQL NULL, while an
    explicit None in a JSON column would be stored as JSON ``null``."""
    state = row.__dict__
    values: dict[str, Any] = {}
    for prop in inspect(type(row)).column_attrs:
        key = prop.key
        if key in state:
            values[prop.columns[0].key] = state[key]
            continue
        default = prop.columns[0].default
        if default is None or not (default.is_scalar or default.is_callable):
            continue
        value = default.arg(None) if default.is_callable else default.arg  # type: ignore[operator]
        setattr(row, key, value)
        values[prop.columns[0].key] = value
    return values
