"""Atomic file writes: a reader, or a resumed sweep, never sees a partial file.

A file is written under a temporary name beside its destination,
``.<name>.partial-<pid>-<8 hex digits><suffix>``, then moved into place with
``os.replace``. A process killed during a save leaves such a temporary
behind; `remove_orphan_temporaries` deletes the ones that match this
pattern exactly, are older than the current run and whose process is gone
(nothing else in the folder is touched). Every save cleans its folder once
per process; [`infinite_width.sweep`][] cleans its folder when it starts.

Files are created with mode ``0o666`` minus the umask, like ``open()``
(not ``tempfile.mkstemp``'s private ``0o600``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import time

PROCESS_START = time.time()
"""When this process started using the package: temporaries older than this are not from one of its saves."""

_TEMPORARY_NAME = re.compile(r"^\..+\.partial-(?P<pid>[1-9][0-9]*)-[0-9a-f]{8}(?:\.[A-Za-z0-9]+)?$")
_CLEANED_FOLDERS = set()


def _new_temporary(path: str, suffix: str) -> str:
    """Create an empty temporary file beside ``path`` (exclusively, mode 0o666 minus umask); return its path."""
    folder, base = os.path.split(os.path.abspath(path))
    while True:
        candidate = os.path.join(folder, f".{base}.partial-{os.getpid()}-{secrets.token_hex(4)}{suffix}")
        try:
            handle = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # 2^32 names: a clash is rare, try another
            continue
        os.close(handle)
        return candidate


def _process_alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows; fall back on age alone
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process (or no such pid at all)
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_orphan_temporaries(folder, started: float) -> list:
    """Delete this module's temporaries in ``folder`` older than ``started`` whose writing process is gone.

    Only names matching ``.<name>.partial-<pid>-<8 hex digits>[.<ext>]`` are
    considered; a temporary still being written by a live process is kept.
    Returns the removed paths (sorted).
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        match = _TEMPORARY_NAME.match(entry.name)
        if not match or not entry.is_file(follow_symlinks=False):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime < started and not _process_alive(int(match["pid"])):
                os.unlink(entry.path)
                removed.append(entry.path)
        except FileNotFoundError:  # finished or removed by someone else meanwhile
            continue
    return sorted(removed)


def os_error(message: str, error: OSError) -> OSError:
    """An ``OSError`` saying ``message: reason``: a ``PermissionError`` for denied or read-only writes."""
    kind = PermissionError if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else OSError
    return kind(f"{message}: {error.strerror or error}")


def check_writable_folder(name: str, folder) -> str:
    """Create ``folder`` if needed and prove that a file can be written in it; return its path.

    Raises ``PermissionError`` (read-only folder or file system) or another
    ``OSError`` (a file in the way, ...) naming the argument ``name`` and the
    folder, before any work that would be lost.
    """
    try:
        folder = os.fsdecode(folder)
    except TypeError as error:
        raise TypeError(f"{name} must be a folder path (str or os.PathLike), got {folder!r}") from error
    try:
        os.makedirs(folder, exist_ok=True)
        os.unlink(_new_temporary(os.path.join(folder, "write-test"), ""))
    except OSError as error:
        raise os_error(f"{name} {folder!r} cannot be written to", error) from error
    return folder


@contextlib.contextmanager
def atomic_path(path, suffix: str = ".tmp"):
    """Yield a temporary path beside ``path``; it replaces ``path`` when the block succeeds.

    The folder is created if needed, and cleaned of orphan temporaries once
    per process. On any error the temporary file is removed and ``path`` is
    left as it was.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if folder not in _CLEANED_FOLDERS:
        remove_orphan_temporaries(folder, PROCESS_START)
        _CLEANED_FOLDERS.add(folder)
    temporary = _new_temporary(path, suffix)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
