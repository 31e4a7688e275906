"""Where a command's messages go: ours to the screen, Beam's to a log file.

* The project's own messages (logger ``throughput`` and its children, WARNING and up) always
  reach stderr, as plain lines ``throughput: <message>``.
* Everything else (Beam's INFO chatter, its workers' logs, gRPC's, every traceback) goes to a
  log file, ``throughput-<UTC time>-<pid>.log`` in ``log_dir()``. In that mode the process's
  file descriptor 2 itself is pointed at the log file, because Beam's worker subprocesses
  (``--direct_running_mode=multi_processing``) inherit it and write to it directly; our own
  screen output keeps a copy of the real stderr.
* ``verbose`` shows all of it (INFO and up, with tracebacks) on stderr as well.
* Beam's lines that give a Dataflow job's id, console URL and state always reach the screen.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

__all__ = ["LOGGER", "LogFile", "ScreenHandler", "capture", "detail", "log_dir", "screen_line", "set_screen"]

LOGGER = "throughput"
_DATAFLOW = "apache_beam.runners.dataflow"
# What Beam says about a Dataflow job that the operator needs while the driver waits:
# "Created job with id: [...]", "To access the Dataflow monitoring console, please navigate to
# https://console.cloud.google.com/dataflow/jobs/...", "Job ... is in state JOB_STATE_RUNNING".
_DATAFLOW_NEWS = ("Created job with id", "console.cloud.google.com/dataflow", "monitoring console", " is in state ")
_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d %(threadName)s]: %(message)s"

ScreenWriter = Callable[[str], None]


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)  # looked up now: sys.stderr may be swapped


_screen: ScreenWriter = _stderr_line


def set_screen(writer: ScreenWriter | None) -> ScreenWriter:
    """Send screen lines to ``writer`` (a live progress display, say); returns the one before."""
    global _screen
    previous, _screen = _screen, writer or _stderr_line
    return previous


def screen_line(line: str) -> None:
    """One line for the operator on stderr, through whoever holds the screen."""
    _screen(line)


def detail(logger: logging.Logger, message: str, *args: object, exc_info: bool = True) -> None:
    """Log to the file only (and to the screen under ``--verbose``), with the traceback."""
    logger.error(message, *args, exc_info=exc_info, extra={"screen": False})


class ScreenHandler(logging.Handler):
    """Chooses the records the operator sees and writes them as plain lines."""

    def __init__(self, verbose: bool = False) -> None:
        super().__init__(logging.DEBUG)
        self.verbose = verbose

    def shows(self, record: logging.LogRecord) -> bool:
        if self.verbose:
            return record.levelno >= logging.INFO
        if getattr(record, "screen", True) is False:
            return False
        if _ours(record.name):
            return record.levelno >= logging.WARNING
        if record.name == _DATAFLOW or record.name.startswith(_DATAFLOW + "."):
            return any(news in record.getMessage() for news in _DATAFLOW_NEWS)
        return False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.shows(record):
            return
        try:
            if _ours(record.name):
                line = f"{LOGGER}: {record.getMessage()}"
            elif record.name.startswith(_DATAFLOW) and not self.verbose:
                line = record.getMessage()
            else:
                line = f"{record.levelname} {record.name}: {record.getMessage()}"
            if self.verbose and record.exc_info:
                line += "\n" + logging.Formatter().formatException(record.exc_info).rstrip("\n")
            screen_line(line)
        except Exception:  # a logging handler never raises into the code that logged
            self.handleError(record)


def _ours(name: str) -> bool:
    return name == LOGGER or name.startswith(LOGGER + ".")


def log_dir() -> Path:
    """``$XDG_STATE_HOME/throughput`` (default ``~/.local/state/throughput``), else the temp folder."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    folder = Path(state) / "throughput"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    return Path(tempfile.gettempdir())


@dataclass(frozen=True)
class LogFile:
    path: Path
    verbose: bool


@contextmanager
def capture(verbose: bool = False) -> Iterator[LogFile]:
    """Set up logging for one command (see the module docstring); undone on exit."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = log_dir() / f"throughput-{stamp}-{os.getpid()}.log"
    file_handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    file_handler.setLevel(logging.INFO)
    file_handler.setFormatter(logging.Formatter(_FILE_FORMAT))
    screen_handler = ScreenHandler(verbose)
    root = logging.getLogger()
    saved_level = root.level
    saved_handlers = list(root.handlers)
    # A plain StreamHandler on the root is logging.basicConfig's (Beam calls it): it would put
    # Beam's messages on the screen. Other handlers (a test's log capture) stay.
    for handler in saved_handlers:
        if type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    root.addHandler(file_handler)
    root.addHandler(screen_handler)
    root.setLevel(logging.INFO)
    ours = logging.getLogger(LOGGER)
    saved_ours = ours.level
    ours.setLevel(logging.INFO)  # our warnings show even if something lowers the root's level
    logging.captureWarnings(True)
    redirected = None if verbose else _point_stderr_at(path)
    saved_hook = threading.excepthook
    if not verbose:
        threading.excepthook = _log_thread_exception
    try:
        yield LogFile(path, verbose)
    finally:
        threading.excepthook = saved_hook
        if redirected is not None:
            _restore_stderr(*redirected)
        logging.captureWarnings(False)
        ours.setLevel(saved_ours)
        root.removeHandler(file_handler)
        root.removeHandler(screen_handler)
        file_handler.close()
        for handler in saved_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(saved_level)
        with contextlib.suppress(OSError):
            if path.stat().st_size == 0:  # nothing was logged (a usage error): leave no empty file behind
                path.unlink()


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """A thread's uncaught exception goes to the log file, not the screen: when a run with
    worker processes is interrupted, each of Beam's threads that served them ends with one."""
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("threads").error("thread %s ended with an exception", name, exc_info=args.exc_value)


def _point_stderr_at(path: Path) -> tuple[int, TextIO, TextIO] | None:
    """fd 2 -> the log file, so child processes and C libraries write there; sys.stderr -> the screen."""
    try:
        if sys.stderr is None or sys.stderr.fileno() != 2:
            return None  # stderr is not the process's (a test's capture): nothing to redirect
    except (AttributeError, OSError, ValueError):
        return None
    sys.stderr.flush()
    screen_fd = os.dup(2)
    log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    original = sys.stderr
    sys.stderr = os.fdopen(screen_fd, "w", buffering=1, encoding=original.encoding or "utf-8",
                           errors="backslashreplace", closefd=False)
    return screen_fd, original, sys.stderr


def _restore_stderr(screen_fd: int, original: TextIO, screen: TextIO) -> None:
    screen.flush()
    os.dup2(screen_fd, 2)
    os.close(screen_fd)
    sys.stderr = original
