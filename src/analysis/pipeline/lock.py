"""Folder locks shared by ``python -m analysis ingest`` and ``python -m analysis run``.

Why: ``ingest`` rewrites ``data/processed/`` while ``run`` hashes those files into its run keys
and then reads them in every notebook. Without a lock a run can record the old hashes and use
the new data (or half of each). The rules, with one advisory ``flock`` per folder
(``<folder>/.analysis.lock``):

- ``run`` holds a *shared* lock on the processed folder from planning to the last index write
  (several runs with different outputs folders may read the same data) and an *exclusive* lock
  on its outputs folder;
- ``ingest`` holds an *exclusive* lock on the processed folder while it writes.

Whoever comes second fails at once with one line naming the folder and the holder, rather than
waiting behind a run that may take an hour. ``flock`` locks are released by the kernel when the
holder dies, so a killed invocation never leaves a stale lock (the file itself stays, empty).

Only this module is imported by ingest (no heavy imports here).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_NAME = ".analysis.lock"


class FolderBusy(RuntimeError):
    """Another ``ingest`` or ``run`` holds the lock on a folder this command needs."""


def acquire(folder: str | Path, *, exclusive: bool, holder: str):
    """Take the lock on ``folder`` (created if missing) and return the open lock file.

    Parameters
    ----------
    folder : path
        The processed or outputs folder.
    exclusive : bool
        True for a writer (ingest; run on its outputs), False for a reader (run on processed data).
    holder : str
        What this process is, e.g. ``"python -m analysis ingest"``; recorded in the lock file by
        exclusive holders so that whoever waits can be told.

    Returns None for a reader when the folder has no lock file and none can be created
    (read-only or absent data: nothing to protect against).

    Raises
    ------
    FolderBusy
        When another process holds a conflicting lock.
    """
    folder = Path(folder)
    path = folder / LOCK_NAME
    try:
        if exclusive:
            folder.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
    except OSError:
        if exclusive:
            raise
        # A reader of a read-only (or absent) data folder: lock the file if someone made one;
        # with none, nobody can be writing through this protocol either.
        try:
            handle = open(path, encoding="utf-8")  # noqa: SIM115
        except OSError:
            return None
    try:
        fcntl.flock(handle, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        other = handle.read().strip()
        handle.close()
        who = other or ("a `python -m analysis run` reading it" if exclusive else "another command writing it")
        raise FolderBusy(f"{folder}: in use by {who}; wait for it to finish and try again") from None
    if exclusive:
        handle.seek(0)
        handle.truncate()
        handle.write(f"`{holder}` (pid {os.getpid()})")
        handle.flush()
    return handle


def release(handle) -> None:
    """Release a lock taken by :func:`acquire` (an exclusive holder empties the file first)."""
    if handle is None or handle.closed:
        return
    try:
        if fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB) is None:
            handle.seek(0)
            handle.truncate()
    except OSError:
        pass  # other readers still hold it: leave the file as it is
    finally:
        handle.close()


@contextlib.contextmanager
def hold(folder: str | Path, *, exclusive: bool, holder: str):
    """``with hold(processed_dir, exclusive=True, holder="python -m analysis ingest"): ...``"""
    handle = acquire(folder, exclusive=exclusive, holder=holder)
    try:
        yield handle
    finally:
        release(handle)
