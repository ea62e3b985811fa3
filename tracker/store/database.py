"""Opening the SQLite file: atomic creation, versioned schema files, upgrades.

The schema lives in numbered files (`schema/0001_initial.sql`, ...). A new
database is built in a temporary file and renamed into place, so a crash never
leaves a half-made one. An older database is copied to `<file>.v<N>.bak`, then
upgraded one version at a time, each step in its own transaction. A database
from a newer tracker is refused.
"""
from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from typing import Dict, Optional

import tracker

MEMORY = ":memory:"
_SCHEMA_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class StoreError(Exception):
    """A database problem, with a one-line message naming the file and the cause."""


def schema_dir() -> Path:
    """The SQL files: `schema/` in a source tree, `tracker/schema/` when installed."""
    package = Path(tracker.__file__).resolve().parent
    for candidate in (package / "schema", package.parent / "schema"):
        if (candidate / "0001_initial.sql").exists():
            return candidate
    raise StoreError("schema files not found beside %s" % package)


def schema_files(directory: Optional[Path] = None) -> Dict[int, Path]:
    directory = directory or schema_dir()
    files = {}
    for path in directory.iterdir():
        match = _SCHEMA_FILE.match(path.name)
        if match:
            files[int(match.group(1))] = path
    if sorted(files) != list(range(1, len(files) + 1)):
        raise StoreError("schema files in %s are not numbered 1..N" % directory)
    return files


def latest_version(directory: Optional[Path] = None) -> int:
    return max(schema_files(directory))


def _run(conn: sqlite3.Connection, sql: str, *args) -> list:
    """Execute and read every row, so no statement is left open (PyPy's sqlite3
    keeps an unfinished statement alive, which blocks VACUUM and schema changes)."""
    return conn.execute(sql, args).fetchall()


def _configure(conn: sqlite3.Connection) -> None:
    _run(conn, "PRAGMA journal_mode=WAL")
    # WAL with synchronous=NORMAL: a commit survives a process crash; a power
    # loss may lose the last transactions, never corrupt the file.
    _run(conn, "PRAGMA synchronous=NORMAL")
    _run(conn, "PRAGMA busy_timeout=5000")


def _apply(conn: sqlite3.Connection, version: int, path: Path) -> None:
    script = path.read_text()
    # executescript commits first; wrap the step so it lands whole or not at all.
    conn.executescript("BEGIN;\n%s\nDELETE FROM schema_version;\n"
                       "INSERT INTO schema_version (version) VALUES (%d);\nCOMMIT;" % (script, version))


def _create(conn: sqlite3.Connection, files: Dict[int, Path], up_to: int) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    for version in range(1, up_to + 1):
        _apply(conn, version, files[version])


def _read_version(conn: sqlite3.Connection) -> int:
    try:
        rows = _run(conn, "SELECT version FROM schema_version")
    except sqlite3.DatabaseError as e:
        if "no such table" in str(e):
            raise StoreError("not a tracker database (no schema_version table)")
        raise
    if not rows:
        raise StoreError("schema_version is empty")
    return int(rows[0][0])


def open_database(path: str, schema: Optional[Path] = None,
                  target_version: Optional[int] = None) -> sqlite3.Connection:
    """Open (creating or upgrading as needed) the tracker database at `path`.

    `target_version` is for tests that need an older schema; it defaults to
    the newest. Raises StoreError with a one-line reason on any failure."""
    files = schema_files(schema)
    target = target_version or max(files)
    try:
        if path == MEMORY:
            conn = sqlite3.connect(MEMORY, check_same_thread=False, isolation_level=None)
            _create(conn, files, target)
            return conn
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise StoreError("cannot open database %s: directory %s does not exist" % (path, directory))
        if os.path.isdir(path):
            raise StoreError("cannot open database %s: it is a directory" % path)
        if not os.path.exists(path):
            _create_atomically(path, files, target)
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            _configure(conn)
            version = _read_version(conn)
            if version > target:
                raise StoreError("database version %d is newer than this tracker supports (%d); "
                                 "refusing to downgrade" % (version, target))
            if version < target:
                _backup(conn, "%s.v%d.bak" % (path, version))
                for step in range(version + 1, target + 1):
                    _apply(conn, step, files[step])
            # Fail now, not at the first flush, if the file is read-only.
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except BaseException:
            conn.close()
            raise
        return conn
    except StoreError as e:
        message = str(e)
        raise StoreError(message if message.startswith("cannot open") else "%s: %s" % (path, message))
    except (sqlite3.Error, OSError) as e:
        if type(e) is sqlite3.DatabaseError:  # the file itself is damaged, not locked or unreadable
            raise StoreError("cannot open database %s: %s: it is damaged; move it aside (for example "
                             "mv %s %s.damaged) and start again, with an empty database" % (path, e, path, path))
        raise StoreError("cannot open database %s: %s" % (path, e))


def _create_atomically(path: str, files: Dict[int, Path], version: int) -> None:
    temporary = "%s.new-%d" % (path, os.getpid())
    try:
        conn = sqlite3.connect(temporary, isolation_level=None)
        try:
            _create(conn, files, version)
        finally:
            conn.close()
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _backup(conn: sqlite3.Connection, backup_path: str) -> None:
    """A consistent copy of the whole database (VACUUM INTO, SQLite 3.27+)."""
    if os.path.exists(backup_path):
        os.unlink(backup_path)
    _run(conn, "VACUUM INTO ?", backup_path)


def schema_version(conn: sqlite3.Connection) -> int:
    return _read_version(conn)
