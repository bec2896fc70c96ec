"""A database from an older jobsys is refused with the fix, not a SQL traceback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from jobsys.config import Settings
from jobsys.db import make_session_factory
from jobsys.errors import ConfigError


def test_an_older_schema_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE tokens (id INTEGER PRIMARY KEY, name TEXT)")
    settings = Settings.from_env({}, database_url=f"sqlite:///{path}", data_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"lacks tokens\.role, tokens\.user_id"):
        make_session_factory(settings)
    fresh = Settings.from_env({}, data_dir=str(tmp_path / "new"))
    make_session_factory(fresh)  # a new database is created whole
