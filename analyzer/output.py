"""Writing results: whole files or none, and one clear error when the place cannot take them.

Every file a command writes goes through `write_atomic`: the bytes go to a temporary file in the
target's folder (`.<name>.<pid>.tmp`), which then replaces the target in one step (os.replace).
An interrupted run leaves the old file or the new one, never half of one; the temporary file of a
process that was killed is removed by the next process that writes into that folder. An OSError
becomes an OutputError, a UserError naming the path, what went wrong and what to do.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from analyzer.errors import UserError

_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.tmp")
_swept: set[str] = set()  # folders whose stale temporary files this process has removed


class OutputError(UserError):
    """A result cannot be written where the user asked (exit 2)."""


def output_error(exc: OSError, path: Path, what: str | None = None) -> OutputError:
    """The OSError met while writing `path` (given with option `what`) as one line and a fix."""
    where = f"{what} {path}" if what else str(path)
    culprit = exc.filename if exc.filename and not _TEMP.fullmatch(Path(exc.filename).name) \
        else path
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"{where}: no space left on the device — free some space or write the "
                           "results somewhere else")
    if exc.errno == errno.EISDIR:
        return OutputError(f"{where}: {culprit} is a folder — give a file name")
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        return OutputError(f"{where}: {culprit} is in the way: a file where a folder is needed — "
                           "give a path inside a folder")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"{where}: {culprit} is not writable ({reason}) — choose a place you "
                           "can write to")
    if exc.errno == errno.ENOENT:
        return OutputError(f"{where}: {culprit} cannot be created ({reason}) — give a path in a "
                           "folder that exists and that you can write to")
    return OutputError(f"{where}: {culprit} cannot be written ({reason}) — choose another place")


def prepare_folder(folder: Path, what: str | None = None, named: Path | None = None) -> Path:
    """Make sure results can go into `folder` (created if need be) before the work that makes
    them starts. `named`: the path the user gave, if it is a file in `folder`."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, named or folder, what) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        code = errno.EROFS if os.statvfs(folder).f_flag & os.ST_RDONLY else errno.EACCES
        raise output_error(OSError(code, os.strerror(code), str(folder)), named or folder, what)
    return folder


def prepare_file(path: Path, what: str | None = None) -> Path:
    """Make sure a result can be written to the file `path` before the work starts."""
    path = Path(path)
    if path.is_dir():
        raise output_error(OSError(errno.EISDIR, os.strerror(errno.EISDIR), str(path)), path, what)
    prepare_folder(path.parent, what, path)
    return path


def write_atomic(path: Path, data: bytes | str | Iterable[bytes] | Callable[[BinaryIO], None],
                 what: str | None = None) -> None:
    """Write `data` (text as UTF-8; bytes; an iterable of bytes; or a function writing to the
    open file) to `path`: all of it, or nothing and the old file as it was."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as out:
                if isinstance(data, str):
                    out.write(data.encode("utf-8"))
                elif isinstance(data, bytes):
                    out.write(data)
                elif callable(data):
                    data(out)
                else:
                    out.writelines(data)
            os.replace(tmp, path)
        except BaseException:  # Ctrl-C included: no half-written file stays behind
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise output_error(exc, path, what) from None


def sweep(folder: Path) -> None:
    """Remove the temporary files that processes no longer running left in `folder` (once per
    folder and process)."""
    key = os.path.abspath(folder)
    if key in _swept:
        return
    _swept.add(key)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        found = _TEMP.fullmatch(name)
        if found and not _running(int(found["pid"])):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process: running
        return True
    return True
