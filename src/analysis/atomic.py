"""Atomic file writes that leave nothing half-written, and one-line messages for write errors.

Every output the pipeline and the table writers produce goes through :func:`write_atomic`: the
bytes go to a temporary file beside the target (same file system, so the final step is a
``rename``), and the temporary file is removed whatever goes wrong — a full disk, a quota, a
read-only folder — so a failed write leaves neither a truncated target nor a ``.tmp`` file.

:class:`OutputWriteError` is the one error type for "this file could not be written": its
message is one line with the path, the operating system's reason and what to do.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

#: errno values that mean "the folder cannot take this file" (not a bug in the code).
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG}

_HINTS = {
    errno.ENOSPC: "free some space or choose another folder",
    errno.EDQUOT: "the disk quota is used up: free some space or choose another folder",
    errno.EFBIG: "the file is larger than this file system or limit allows",
    errno.EACCES: "this user may not write there: fix the folder's permissions or choose another folder",
    errno.EPERM: "this user may not write there: fix the folder's permissions or choose another folder",
    errno.EROFS: "the file system is read-only: choose another folder",
}


class OutputWriteError(OSError):
    """A file could not be written (disk full, quota, permissions); the message is one line."""

    def __init__(self, path: str | Path, cause: OSError):
        code = cause.errno
        super().__init__(code, cause.strerror or str(cause))
        self.path = str(path)
        self.errno_name = errno.errorcode.get(code, "") if code else ""
        reason = cause.strerror or type(cause).__name__
        self.message = f"cannot write {self.path}: {reason}" + (f"; {_HINTS[code]}" if code in _HINTS else "")

    def __str__(self) -> str:
        return self.message


def is_write_error(exc: BaseException) -> bool:
    """True if ``exc`` (or what it was raised from) is an OSError meaning the folder cannot take a file."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def as_write_error(exc: BaseException, path: str | Path | None = None) -> OutputWriteError | None:
    """The :class:`OutputWriteError` that ``exc`` amounts to, or None if it is another error."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OutputWriteError):
            return exc
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            return OutputWriteError(exc.filename or path or "?", exc)
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file ``path`` (a separate step so that tests can inject faults)."""
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()


def write_atomic(path: str | Path, data: bytes | str, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``path`` atomically; never leaves a temporary file behind.

    Raises
    ------
    OutputWriteError
        When the folder cannot take the file (disk full, quota, permissions, read-only).
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode(encoding)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_file(tmp, data)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, OutputWriteError) and exc.errno in WRITE_ERRNOS:
            raise OutputWriteError(path, exc) from None
        raise
    return path
