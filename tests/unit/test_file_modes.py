"""The data folder is for its user only (issue 14, item 15): the folder 0700 and
the database, signing key, admin token and Redis password 0600, whether jobsys
creates them or finds them wider from an earlier run; and the local
redis-server ``make run`` starts asks for a password kept there."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobsys import service
from jobsys.cli.main import main
from jobsys.config import Settings
from jobsys.runtime import build_context
from jobsys.stack import data_dir, local_redis, redacted, url_with_password
from jobsys.store.db import make_session_factory
from tests.support.services import missing

SECRET = "unit-test-secret-key-0123456789"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def loosen(path: Path, text: str | None = None, bits: int = 0o644) -> Path:
    if text is not None:
        path.write_text(text)
    os.chmod(path, bits)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_new_data_folder_and_its_files_are_for_this_user_only(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, whatever this runner has
    try:
        folder = tmp_path / "data"
        settings = Settings.from_env({}, data_dir=str(folder))
        sessions = make_session_factory(settings)
        with sessions() as session:  # open: SQLite's WAL and shared-memory files exist now
            session.connection()
            files = sorted(p.name for p in folder.iterdir())
            assert {"jobsys.db", "jobsys.db-wal", "jobsys.db-shm", "secret.key"} <= set(files)
            assert mode(folder) == 0o700
            assert {name: mode(folder / name) for name in files} == dict.fromkeys(files, 0o600)
    finally:
        os.umask(old)


def test_wider_modes_found_at_start_are_fixed_and_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    loosen(folder / "secret.key", SECRET)
    loosen(folder / "admin.token", "jst_old.token\n", 0o666)
    loosen(folder / "redis.password", "old-password\n")
    outside = loosen(tmp_path / "not-ours.txt", "x")
    (folder / "link").symlink_to(outside)  # never followed: its target is not jobsys's
    settings = Settings.from_env({}, data_dir=str(folder))
    loosen(folder / "jobsys.db")

    data_dir(settings)  # what `jobsys run` does first

    said = capsys.readouterr().err
    assert mode(folder) == 0o700
    for name in ("secret.key", "admin.token", "redis.password", "jobsys.db"):
        assert mode(folder / name) == 0o600, name
        assert f"{folder / name} was mode 06" in said
    assert f"{folder} was mode 0755; changed it to 0700" in said
    assert mode(outside) == 0o644

    # The admin token `jobsys run` writes next goes into the tightened file.
    ctx = build_context(settings)
    assert service.bootstrap_token(ctx, folder / "admin.token") is not None
    assert mode(folder / "admin.token") == 0o600


def test_every_process_fixes_modes_when_it_builds_its_context(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A web app or worker started by itself (compose, ``jobsys worker``) too."""
    folder = tmp_path / "data"
    settings = Settings.from_env({}, data_dir=str(folder), secret_key=SECRET)
    os.chmod(folder, 0o750)
    loosen(folder / "jobsys.db")
    with caplog.at_level(logging.WARNING, logger="jobsys.runtime"):
        build_context(settings)
    assert mode(folder) == 0o700 and mode(folder / "jobsys.db") == 0o600
    assert "jobsys.db was mode 0644; changed it to 0600" in caplog.text


def test_a_sqlite_database_outside_the_folder_is_tightened_too(tmp_path: Path) -> None:
    db = loosen(tmp_path / "elsewhere.db", "")
    settings = Settings.from_env(
        {}, data_dir=str(tmp_path / "data"), secret_key=SECRET, database_url=f"sqlite:///{db}"
    )
    data_dir(settings)
    assert mode(db) == 0o600


def test_the_local_redis_asks_for_a_password_kept_in_the_data_folder(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        missing("redis-server", "apt install redis-server")
    folder = tmp_path / "data"
    port = free_port()  # nothing answers there: the stack would start its own
    settings = Settings.from_env(
        {}, data_dir=str(folder), secret_key=SECRET, redis_url=f"redis://127.0.0.1:{port}/0"
    )

    ours, child = local_redis(settings)

    password = (folder / "redis.password").read_text().strip()
    assert len(password) >= 32 and mode(folder / "redis.password") == 0o600
    assert ours.redis_url == f"redis://:{password}@127.0.0.1:{port}/0"
    assert child is not None and not any(password in arg for arg in child.argv)  # `ps` shows argv
    config = Path(child.argv[-1])
    assert mode(config) == 0o600
    lines = config.read_text().splitlines()
    assert f"requirepass {password}" in lines and "bind 127.0.0.1" in lines
    # The same password on the next start, so a still-running one stays reachable.
    assert local_redis(settings)[0].redis_url == ours.redis_url


def test_redis_urls_carry_and_hide_the_password() -> None:
    assert url_with_password("redis://127.0.0.1:6380/2", "p/w") == "redis://:p%2Fw@127.0.0.1:6380/2"
    assert url_with_password("redis://u:old@[::1]:6379/0", "new") == "redis://:new@[::1]:6379/0"
    assert redacted("redis://:secret@127.0.0.1:6379/0") == "redis://***@127.0.0.1:6379/0"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_a_new_sqlite_database_outside_the_folder_is_made_private(tmp_path: Path) -> None:
    db = tmp_path / "other" / "new.db"
    settings = Settings.from_env(
        {}, data_dir=str(tmp_path / "data"), secret_key=SECRET, database_url=f"sqlite:///{db}"
    )
    build_context(settings)
    assert mode(db) == 0o600


def test_jobsys_db_upgrade_makes_a_new_sqlite_database_private(tmp_path: Path) -> None:
    """The first door to open a database may be the migration command."""
    db = tmp_path / "elsewhere" / "jobsys.db"
    env = {"JOBSYS_DATABASE_URL": f"sqlite:///{db}", "JOBSYS_DATA_DIR": str(tmp_path / "d")}
    result = CliRunner().invoke(main, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert mode(db) == 0o600
