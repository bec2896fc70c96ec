"""The local data folder (``JOBSYS_DATA_DIR``, default ``.jobsys``) and its modes.

It holds what lets someone act as jobsys: the signing key (whoever reads it can
sign code that workers run), the admin token, the password of the local
redis-server, and the SQLite database (token hashes, specs, logs). So the
folder is 0700 and every file in it 0600, for us only. A folder made by an
older jobsys, by hand or under a loose umask may be wider; each process fixes
what it finds at start and says so (``tighten``), rather than refusing to run.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from jobsys.config import Settings

FOLDER_MODE = 0o700
FILE_MODE = 0o600
#: SQLite writes these next to the database; it gives them the database file's mode.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_folder(path: Path) -> Path:
    """Create ``path`` (and missing parents) with the folder itself 0700."""
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 unless it exists (its content is kept).

    Creating it ourselves first is how the SQLite database gets 0600: SQLite
    would create it under the umask (usually 0644), and its WAL and shared-memory
    files copy the database file's mode.
    """
    private_folder(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return path
    os.close(fd)
    return path


def sqlite_path(database_url: str) -> Path | None:
    """The file of a SQLite database URL; None for other databases and ``:memory:``."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def tighten(settings: Settings) -> list[str]:
    """Make the data folder 0700 and the files in it (and the SQLite database,
    wherever it is) 0600; one line per mode changed, for the caller to log.

    Symlinks are left alone: chmod would follow one to a file that is not ours.
    Nothing is created here; a folder that does not exist yet has nothing to leak.
    """
    notes: list[str] = []
    folder = settings.data_path
    if folder.is_dir() and not folder.is_symlink():
        _fix(folder, FOLDER_MODE, notes)
        for entry in sorted(folder.iterdir()):
            if entry.is_file() and not entry.is_symlink():
                _fix(entry, FILE_MODE, notes)
    database = sqlite_path(settings.database_url) if settings.database_url else None
    if database is not None:
        for path in (database, *(Path(f"{database}{s}") for s in SQLITE_SIDE_FILES)):
            if path.is_file() and not path.is_symlink():
                _fix(path, FILE_MODE, notes)
    return notes


def _fix(path: Path, mode: int, notes: list[str]) -> None:
    current = stat.S_IMODE(path.lstat().st_mode)
    if current & ~mode == 0:  # no bits beyond ours (0400 for a file is fine too)
        return
    try:
        os.chmod(path, current & mode)
    except OSError as exc:
        notes.append(
            f"{path} is mode {current:04o}, readable by others, and could not be changed "
            f"({exc.strerror}): run chmod {mode:o} {path}"
        )
        return
    notes.append(f"{path} was mode {current:04o}; changed it to {current & mode:04o}")


__all__ = ["FILE_MODE", "FOLDER_MODE", "private_file", "private_folder", "sqlite_path", "tighten"]
