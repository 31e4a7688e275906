"""The server's logs: structured access lines, and its own messages.

Access lines are one JSON object per request, buffered and written in one ``write`` every quarter
second (or every 512 lines), so a busy server does not pay a system call per request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import datetime, timezone
from typing import Any

import orjson

__all__ = ["AccessLog", "setup_logging"]

_FLUSH_SECONDS = 0.25
_FLUSH_LINES = 512


class AccessLog:
    """Where access lines go: ``-`` for standard error, a file path (appended to), or ``off``."""

    def __init__(self, target: str) -> None:
        self._lines: list[bytes] = []
        self._task: asyncio.Task[None] | None = None
        self._pid = os.getpid()
        if target == "off":
            self._fd: int | None = None
        elif target == "-":
            self._fd = sys.stderr.fileno()
        else:
            self._fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._owns_fd = target not in ("off", "-")

    @property
    def enabled(self) -> bool:
        return self._fd is not None

    def record(self, entry: dict[str, Any]) -> None:
        if self._fd is None:
            return
        entry["time"] = f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%S.%f}Z"
        entry["pid"] = self._pid
        self._lines.append(orjson.dumps(entry) + b"\n")
        if len(self._lines) >= _FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        if not self._lines or self._fd is None:
            return
        data, self._lines = b"".join(self._lines), []
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError:
            pass  # a log that cannot be written never fails a request

    async def start(self) -> None:
        if self._fd is not None:
            self._task = asyncio.get_running_loop().create_task(self._flusher(), name="access-log")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.flush()
        if self._owns_fd and self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(_FLUSH_SECONDS)
            self.flush()


def setup_logging() -> None:
    """The server's own messages (not access lines) to standard error."""
    logger = logging.getLogger("throughput.intake")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s throughput.intake[%(process)d]: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
