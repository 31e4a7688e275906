"""Progress of a long command on stderr: live on a terminal, one plain line per step otherwise.

A ``Reporter`` is the ``progress`` callback of ``pipelines.run.run`` and
``pipelines.maintenance.backfill``: it hears each step as it starts ("planning", "pipeline",
"committing", and "chunk i/n" before each chunk of a backfill). It knows nothing of the
runner, so it says the same on Dataflow as in process: which step, how long so far, which chunk.

* On a terminal (stderr is a TTY and ``TERM`` is not ``dumb``): one live line drawn by rich,
  with a spinner, the step, a bar of committed chunks (a backfill) and the elapsed time; it is
  erased when the command ends, before the summary is printed.
* Elsewhere (cron, Airflow, a pipe): one plain line per step, ``throughput: chunk 2/6: pipeline``.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from pipelines import logs

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ["Reporter", "is_terminal"]

_CHUNK = re.compile(r"chunk (\d+)/(\d+)")


def is_terminal(stream: TextIO) -> bool:
    """True where a live display makes sense: a TTY whose terminal can move the cursor."""
    try:
        return stream.isatty() and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):
        return False


class Reporter:
    """The ``progress`` callback of a run or a backfill, and what prints above its live line."""

    def __init__(self, command: str, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.command = command
        self.stream = stream if stream is not None else sys.stderr
        self.live = is_terminal(self.stream) if live is None else live
        self.started = time.monotonic()
        self.step = ""
        self.chunk: tuple[int, int] | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._screen: logs.ScreenWriter | None = None
        self._lock = threading.Lock()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def label(self) -> str:
        """``chunk 2/6: pipeline``, or just the step."""
        if self.chunk is None:
            return self.step
        number, total = self.chunk
        return f"chunk {number}/{total}: {self.step}" if self.step else f"chunk {number}/{total}"

    def __enter__(self) -> Reporter:
        if self.live:
            self._start_live()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def __call__(self, step: str) -> None:
        """A step starts: "planning", "pipeline", "committing", or "chunk i/n" (a new chunk)."""
        match = _CHUNK.fullmatch(step)
        if match:
            self.chunk = (int(match[1]), int(match[2]))
            self.step = ""
            if self._progress is not None and self._task is not None:
                self._progress.update(self._task, total=self.chunk[1], completed=self.chunk[0] - 1,
                                      description=self._description(), refresh=True)
            return
        self.step = step
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=self._description(), refresh=True)
        else:
            self._plain(f"{logs.LOGGER}: {self.label}")

    def chunk_committed(self, number: int, total: int) -> None:
        """Advance the bar of a backfill: ``number`` of ``total`` chunks are committed."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=total, completed=number, refresh=True)

    def write(self, text: str, file: TextIO | None = None) -> None:
        """Print ``text`` to ``file`` (stdout by default) without tearing the live line."""
        target = file if file is not None else sys.stdout
        with self._lock:
            progress = self._progress
            if progress is not None:
                progress.stop()  # erases the live line (transient); started again below
            try:
                print(text, file=target, flush=True)
            finally:
                if progress is not None:
                    progress.start()

    def close(self) -> None:
        """Erase the live line and give the screen back; idempotent."""
        with self._lock:
            progress, self._progress = self._progress, None
        if progress is not None:
            progress.stop()
        if self._screen is not None:
            logs.set_screen(self._screen)
            self._screen = None

    def _description(self) -> str:
        return f"{self.command}: {self.label}" if self.label else self.command

    def _plain(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def _start_live(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        console = Console(file=self.stream, force_terminal=True, highlight=False, emoji=False, markup=False)
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(bar_width=24), TimeElapsedColumn(),
            console=console, transient=True, redirect_stdout=False, redirect_stderr=False,
        )
        self._task = self._progress.add_task(self._description(), total=None)
        self._progress.start()

        def print_line(line: str) -> None:  # a log line for the screen, drawn above the live line
            console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)

        self._screen = logs.set_screen(print_line)
