"""Landing files: open for appending, closed into place, recovered after a crash.

Layout under the landing folder ``DIR``::

    DIR/workstream_id=<id>/<YYYY-MM-DD>/<name>.jsonl           closed: what `throughput run` reads
    DIR/_open/workstream_id=<id>/<YYYY-MM-DD>/<name>.jsonl.part being written (invisible to
                                                                'DIR/**/*.jsonl': `_` folder, .part)

``<YYYY-MM-DD>`` is the UTC date the server received the file's records; ``<name>`` is the UTC
time the file was opened, the writer's pid and a random part, so names sort by opening time and
never collide. A closed file is never written again.

Every open file is held under an exclusive ``flock`` by the process writing it. A ``.part`` file
that nobody holds is a leftover (of a crash, of a worker that died, or of a write that failed)
and ``recover_file`` closes it: a torn last line (no trailing newline, or not a JSON object) is
cut off, an empty file is deleted, and the rest is renamed into place. A file is created under a
``.new`` name and locked before it is renamed to ``.part``, so a sweep never sees an unlocked
``.part`` that is still being opened.

``LandingFiles`` is the writer's side: blocking file work, all of it done on one thread.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import orjson

__all__ = [
    "CLOSED_SUFFIX",
    "OPEN_FOLDER",
    "PART_SUFFIX",
    "LandingFiles",
    "LandingLayout",
    "Recovered",
    "Write",
    "recover_all",
    "recover_file",
]

OPEN_FOLDER = "_open"
PART_SUFFIX = ".jsonl.part"
NEW_SUFFIX = ".jsonl.new"
CLOSED_SUFFIX = ".jsonl"
_READ_BLOCK = 1 << 20
_STALE_NEW_SECONDS = 60.0  # a .new file nobody holds after this long is a crash leftover of an open
_LOG = logging.getLogger("throughput.intake")

Observer = Callable[[], None]  # a file was opened
CloseObserver = Callable[[str, int], None]  # a file was closed: (reason, records in it)


class LandingLayout:
    """The one object that knows the landing folder's paths; every path it gives stays under it."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.abspath(root))
        self.open_root = self.root / OPEN_FOLDER

    def new_open_path(self, workstream: str, day: str) -> Path:
        """A fresh ``.part`` path for a file of ``workstream``'s records received on ``day``."""
        opened = datetime.now(timezone.utc)
        name = f"{opened:%Y%m%dT%H%M%S%f}Z-p{os.getpid()}-{uuid.uuid4().hex[:12]}{PART_SUFFIX}"
        return self._inside(self.open_root / f"workstream_id={workstream}" / day / name)

    def closed_path(self, open_path: Path) -> Path:
        """Where an open file goes when it is closed: same folders, without ``_open`` and ``.part``."""
        relative = open_path.relative_to(self.open_root)
        return self._inside(self.root / relative.parent / (relative.name[: -len(PART_SUFFIX)] + CLOSED_SUFFIX))

    def leftovers(self) -> list[Path]:
        """Open files on disk (``.part``), whoever holds them, in name order."""
        return sorted(self.open_root.glob(f"workstream_id=*/*/*{PART_SUFFIX}"))

    def stale_new_files(self) -> list[Path]:
        return sorted(self.open_root.glob(f"workstream_id=*/*/*{NEW_SUFFIX}"))

    def prepare(self) -> None:
        """Create the landing folder and its ``_open`` folder (durably)."""
        ensure_dir(self.open_root)

    def _inside(self, path: Path) -> Path:
        if os.path.commonpath([self.root, os.path.abspath(path)]) != str(self.root) or ".." in path.parts:
            raise ValueError(f"{path} is not inside the landing folder {self.root}")
        return path


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (a created, renamed or deleted file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> None:
    """``mkdir -p``, fsyncing the parent of each folder it creates."""
    if path.is_dir():
        return
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o755)
        except FileExistsError:
            pass
        fsync_dir(folder.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # pragma: no cover - os.write raises rather than return 0 on a regular file
            raise OSError(errno.EIO, "write wrote nothing")
        view = view[written:]


# ---------------------------------------------------------------------------------------------
# Recovery


@dataclass(frozen=True)
class Recovered:
    """What closing one leftover did: where it went (None: it was empty, deleted) and bytes cut."""

    source: Path
    target: Path | None
    bytes_cut: int


def _last_newline_before(fd: int, end: int) -> int:
    """Offset of the last ``\\n`` in ``[0, end)``, or -1."""
    while end > 0:
        start = max(0, end - _READ_BLOCK)
        block = os.pread(fd, end - start, start)
        found = block.rfind(b"\n")
        if found >= 0:
            return start + found
        end = start
    return -1


def _is_record(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def good_length(fd: int, size: int) -> int:
    """The length of the file's prefix of whole, valid lines: torn or invalid last lines cut."""
    end = size
    while end > 0:
        if os.pread(fd, 1, end - 1) != b"\n":  # torn: no trailing newline
            end = _last_newline_before(fd, end) + 1
            continue
        start = _last_newline_before(fd, end - 1) + 1
        if _is_record(os.pread(fd, end - 1 - start, start)):
            return end
        end = start  # a whole line that is not a JSON object: cut it too
    return 0


def recover_file(layout: LandingLayout, path: Path) -> Recovered | None:
    """Close a leftover ``.part`` file into place; None if another process holds it or it is gone."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a live writer holds it
        try:
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                return None  # closed by someone else between our open and our lock
        except FileNotFoundError:
            return None
        size = os.fstat(fd).st_size
        keep = good_length(fd, size)
        if keep < size:
            os.ftruncate(fd, keep)
            os.fsync(fd)
        if keep == 0:
            os.unlink(path)
            fsync_dir(path.parent)
            return Recovered(path, None, size)
        target = layout.closed_path(path)
        _rename_into_place(path, target)
        return Recovered(path, target, size - keep)
    finally:
        os.close(fd)


def _rename_into_place(source: Path, target: Path) -> None:
    ensure_dir(target.parent)
    if target.exists():  # never overwrite a closed file (names are unique; this is a guard)
        raise FileExistsError(errno.EEXIST, "landing file exists already", str(target))
    os.rename(source, target)
    fsync_dir(target.parent)
    fsync_dir(source.parent)


def recover_all(layout: LandingLayout) -> list[Recovered]:
    """Close every leftover that no live process holds; also drop stale, unheld ``.new`` files."""
    done: list[Recovered] = []
    if not layout.open_root.is_dir():
        return done
    for path in layout.leftovers():
        try:
            result = recover_file(layout, path)
        except OSError as exc:
            _LOG.warning("cannot close leftover landing file %s yet: %s", path, exc)
            continue
        if result is not None:
            done.append(result)
            _LOG.info("closed leftover landing file %s -> %s (%d torn bytes cut)",
                      path, result.target or "(empty, deleted)", result.bytes_cut)
    for path in layout.stale_new_files():
        _drop_stale_new(path)
    _drop_old_empty_folders(layout)
    return done


def _drop_old_empty_folders(layout: LandingLayout) -> None:
    """Remove ``_open``'s day folders of two or more days ago once empty (never today's: a
    writer may be about to create a file in it)."""
    today = datetime.now(timezone.utc).date().toordinal()
    for folder in layout.open_root.glob("workstream_id=*/*"):
        try:
            day = datetime.strptime(folder.name, "%Y-%m-%d").date().toordinal()
        except ValueError:
            continue
        if today - day >= 2:
            try:
                folder.rmdir()
            except OSError:
                pass  # not empty, or already gone


def _drop_stale_new(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        stat = os.fstat(fd)
        if stat.st_size == 0 and time.time() - stat.st_mtime > _STALE_NEW_SECONDS:
            os.unlink(path)
    except (BlockingIOError, FileNotFoundError):
        pass
    except OSError as exc:
        _LOG.warning("cannot remove stale landing file %s: %s", path, exc)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# The writer's files


@dataclass
class OpenFile:
    """A landing file this process appends to and holds locked."""

    fd: int
    path: Path
    opened: float  # time.monotonic()
    size: int = 0  # bytes known durable: the offset a failed write is cut back to
    records: int = 0


@dataclass(frozen=True)
class Write:
    """Lines (newline-terminated) of one workstream and day to land in one go."""

    workstream: str
    day: str
    payload: bytes
    records: int


@dataclass
class CommitOutcome:
    """Per write of a commit: None (landed) or the OSError that stopped it."""

    errors: list[OSError | None]
    fsync_seconds: list[float] = field(default_factory=list)


class LandingFiles:
    """The open files of one process: append, fsync, rotate, close. Used from one thread only."""

    def __init__(self, layout: LandingLayout, max_file_bytes: int, max_file_seconds: float,
                 on_open: Observer | None = None, on_close: CloseObserver | None = None) -> None:
        self.layout = layout
        self.max_file_bytes = max_file_bytes
        self.max_file_seconds = max_file_seconds
        self._files: dict[tuple[str, str], OpenFile] = {}
        self._on_open = on_open
        self._on_close = on_close

    @property
    def open_count(self) -> int:
        return len(self._files)

    def next_age_deadline(self) -> float | None:
        """Monotonic time when the oldest open file is due to close by age."""
        if not self._files:
            return None
        return min(f.opened for f in self._files.values()) + self.max_file_seconds

    def rotation_due(self, now: float) -> bool:
        """Whether a file is full or old enough to close."""
        return any(f.size >= self.max_file_bytes or now - f.opened >= self.max_file_seconds
                   for f in self._files.values())

    def commit(self, writes: Sequence[Write]) -> CommitOutcome:
        """Append every write to its open file, then fsync each touched file once."""
        errors: list[OSError | None] = [None] * len(writes)
        groups: dict[tuple[str, str], list[int]] = {}
        for index, write in enumerate(writes):
            groups.setdefault((write.workstream, write.day), []).append(index)
        touched: list[tuple[OpenFile, list[int], int]] = []
        for key, indexes in groups.items():
            try:
                handle = self._file_for(*key)
            except OSError as exc:
                for index in indexes:
                    errors[index] = exc
                continue
            data = b"".join(writes[i].payload for i in indexes)
            try:
                _write_all(handle.fd, data)
            except OSError as exc:
                self._fail(key, handle, exc)
                for index in indexes:
                    errors[index] = exc
                continue
            touched.append((handle, indexes, len(data)))
        outcome = CommitOutcome(errors)
        for handle, indexes, length in touched:
            started = time.perf_counter()
            try:
                os.fsync(handle.fd)
            except OSError as exc:
                key = (writes[indexes[0]].workstream, writes[indexes[0]].day)
                self._fail(key, handle, exc)
                for index in indexes:
                    errors[index] = exc
                continue
            outcome.fsync_seconds.append(time.perf_counter() - started)
            handle.size += length
            handle.records += sum(writes[i].records for i in indexes)
        return outcome

    def rotate(self, now: float | None = None) -> None:
        """Close the files that are full or old enough."""
        now = time.monotonic() if now is None else now
        for key, handle in list(self._files.items()):
            if handle.size >= self.max_file_bytes:
                self._close(key, "size")
            elif now - handle.opened >= self.max_file_seconds:
                self._close(key, "age")

    def close_all(self, reason: str = "shutdown") -> None:
        for key in list(self._files):
            self._close(key, reason)

    def _file_for(self, workstream: str, day: str) -> OpenFile:
        key = (workstream, day)
        handle = self._files.get(key)
        if handle is None:
            handle = self._create(workstream, day)
            self._files[key] = handle
            if self._on_open is not None:
                self._on_open()
        return handle

    def _create(self, workstream: str, day: str) -> OpenFile:
        path = self.layout.new_open_path(workstream, day)
        ensure_dir(path.parent)
        fresh = path.with_name(path.name[: -len(PART_SUFFIX)] + NEW_SUFFIX)
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(fresh, path)
            fsync_dir(path.parent)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(fresh if fresh.exists() else path)
            except OSError:
                pass
            raise
        return OpenFile(fd=fd, path=path, opened=time.monotonic())

    def _fail(self, key: tuple[str, str], handle: OpenFile, exc: OSError) -> None:
        """A write or fsync failed: cut the file back to its durable size and stop using it.

        The file is closed without being renamed: it stays an unheld ``.part`` that the next
        sweep (or start) closes into place, cutting whatever torn tail the cut here could not.
        """
        _LOG.error("landing write to %s failed: %s", handle.path, exc)
        try:
            os.ftruncate(handle.fd, handle.size)
            os.fsync(handle.fd)
        except OSError as cut_error:
            _LOG.error("cannot cut %s back to %d bytes (%s); it is closed on a later sweep",
                       handle.path, handle.size, cut_error)
        self._files.pop(key, None)
        _close_quietly(handle.fd)
        if self._on_close is not None:
            self._on_close("error", handle.records)

    def _close(self, key: tuple[str, str], reason: str) -> None:
        handle = self._files.pop(key)
        try:
            if handle.size == 0:
                os.unlink(handle.path)
                fsync_dir(handle.path.parent)
            else:
                _rename_into_place(handle.path, self.layout.closed_path(handle.path))
        except OSError as exc:
            _LOG.error("cannot close landing file %s into place (%s); it is closed on a later sweep", handle.path, exc)
        finally:
            _close_quietly(handle.fd)
            if self._on_close is not None:
                self._on_close(reason, handle.records)


def _close_quietly(fd: int) -> None:
    """Close a landing file whose bytes are fsynced (or cut back) already: a failing close loses nothing."""
    try:
        os.close(fd)
    except OSError as exc:
        _LOG.error("closing a landing file failed: %s", exc)
