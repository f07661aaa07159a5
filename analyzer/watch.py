"""A drop folder: each bundle written into DIR is analyzed into OUT once it is complete.

A bundle counts as complete when its size and modification time (for a directory bundle: file
count, total size, newest mtime) are the same over two polls, and a zip opens (its central
directory is written last, so a zip still being copied does not; one that stays unopenable for
GIVE_UP_POLLS is broken and handed over to be reported). Then it is analyzed like a
batch of one (`run_batch`, sharing OUT's cache), which also refreshes the fleet page. Bad bundles
are reported once and skipped until they change. Polling rather than inotify: it works the same on
network shares, where drop folders often live, and needs no extra dependency.
"""

from __future__ import annotations

import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from analyzer.batch import is_archive, run_paths
from analyzer.bundle import ARCHIVE_SUFFIXES
from analyzer.errors import UserError
from analyzer.output import prepare_folder
from analyzer.pipeline import Options
from analyzer.terminal import labelled, say

# Names that copy tools and browsers use while a file is still arriving.
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download", ".filepart", "~")
GIVE_UP_POLLS = 10  # a zip unchanged this long that still does not open is broken, not arriving


@dataclass
class _Seen:
    signature: tuple
    stable_polls: int = 0
    handled: bool = False


def _signature(path: Path) -> tuple | None:
    try:
        if path.is_dir():
            files = [p.stat() for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
            return ("dir", len(files), sum(s.st_size for s in files),
                    max((s.st_mtime_ns for s in files), default=0))
        stat = path.stat()
        return ("file", stat.st_size, stat.st_mtime_ns)
    except OSError:  # vanished or unreadable between listing and stat: look again next poll
        return None


def _opens(path: Path) -> bool:
    """A zip is readable only once its central directory, written last, is there. A file that
    cannot be opened (gone since it was listed, or unreadable) does not open either."""
    if path.is_dir():
        return True
    try:
        with path.open("rb") as fh:
            if fh.read(4) != b"PK\x03\x04":
                return True
        with zipfile.ZipFile(path):
            return True
    except (zipfile.BadZipFile, OSError):
        return False


def _candidates(folder: Path, out: Path) -> list[Path]:
    """Bundles in the drop folder: archives and directories, not hidden, not partial, not OUT."""
    found = []
    try:
        listed = sorted(folder.iterdir())
    except OSError:  # the folder itself went away or cannot be listed: nothing this poll
        return found
    for path in listed:
        name = path.name.lower()
        if name.startswith(".") or name.endswith(PARTIAL_SUFFIXES):
            continue
        if path.is_dir():
            if path.resolve() != out.resolve():
                found.append(path)
        elif path.is_file() and (name.endswith(ARCHIVE_SUFFIXES) or is_archive(path)):
            found.append(path)
    return found


def ready_bundles(folder: Path, out: Path, seen: dict[Path, _Seen],
                  give_up_polls: int = GIVE_UP_POLLS) -> list[Path]:
    """One poll: the bundles that became complete since the last one (and were not handled).

    A zip that has not changed for `give_up_polls` polls yet still does not open is handed over
    anyway: it is not being written, it is broken, and the analysis will say so.
    """
    ready = []
    present = set()
    for path in _candidates(folder, out):
        present.add(path)
        signature = _signature(path)
        if signature is None:
            continue
        state = seen.get(path)
        if state is None or state.signature != signature:
            seen[path] = _Seen(signature)  # new or changed: wait for it to settle
            continue
        state.stable_polls += 1
        if state.handled:
            continue
        if _opens(path) or state.stable_polls >= give_up_polls:
            state.handled = True
            ready.append(path)
    for gone in set(seen) - present:
        del seen[gone]
    return ready


def watch(folder: Path, out: Path, options: Options, console: Console,
          stop: threading.Event | None = None, poll: float = 1.0, jobs: int | None = 1) -> None:
    """Analyze bundles dropped into `folder` until `stop` is set or Ctrl-C."""
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder — give the drop folder to watch")
    prepare_folder(out, "-o")
    stop = stop or threading.Event()
    seen: dict[Path, _Seen] = {}

    say(console, f"Watching {folder} → {out} (every {poll:g}s; Ctrl-C stops)")
    try:
        while not stop.is_set():
            ready = ready_bundles(folder, out, seen)
            if ready:
                result = run_paths(ready, out, jobs, options, None, console)
                for path in ready:
                    key = str(path.resolve())
                    failure = next((m for p, m in result.failed if p == key), None)
                    if failure:
                        details = result.details.get(key)
                        labelled(console, "skipped", "red", f"{path.name}: {failure}"
                                 + (f" (details: {details})" if details else ""))
                    else:
                        labelled(console, "analyzed", "green", f"{path.name} → {out / 'index.html'}")
            stop.wait(poll)
    except KeyboardInterrupt:
        pass
    say(console, "Stopped watching.")
