"""Group commit: concurrent requests share one write and one fsync per landing file.

A request hands its lines to ``GroupCommitWriter.land`` and waits. One task takes everything
pending, has ``LandingFiles.commit`` append it and fsync each touched file once, then wakes each
request with its outcome. While a commit runs, new requests queue up in the kernel's socket
buffers and the next group takes them all. The same task closes files by size and age, and
sweeps leftovers of processes that died (``landing.recover_all``).

The commit runs on the event loop's own thread. Handing it to a helper thread measured two to
three times slower here: each hand-off makes the helper wait for the GIL (up to the 5 ms switch
interval) while the loop is busy with requests, and every waiting request waits with it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from dataclasses import dataclass

from intake import metrics
from intake.landing import CommitOutcome, LandingFiles, LandingLayout, Write, recover_all

__all__ = ["GroupCommitWriter", "LandingUnavailable"]

_LOG = logging.getLogger("throughput.intake")
_SWEEP_SECONDS_MAX = 30.0


class LandingUnavailable(Exception):
    """The lines could not be made durable (disk full, read-only, unwritable): answer 503."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _reason(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "EIO")
    return f"{name}: {exc.strerror or exc}"


@dataclass
class _Pending:
    write: Write
    done: asyncio.Future[None]


class GroupCommitWriter:
    """The landing writer of one process (one event loop)."""

    def __init__(self, layout: LandingLayout, max_file_bytes: int, max_file_seconds: float) -> None:
        self._files = LandingFiles(layout, max_file_bytes, max_file_seconds,
                                   on_open=metrics.OPEN_FILES.inc, on_close=self._closed)
        self._layout = layout
        self._pending: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._sweep_every = max(0.5, min(max_file_seconds, _SWEEP_SECONDS_MAX))
        self._next_sweep = 0.0
        self.last_error: str | None = None  # None while the latest commit landed

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="landing-writer")

    async def close(self) -> None:
        """Land what is pending, close every open file into place, stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    async def land(self, workstream: str, day: str, payload: bytes, records: int) -> None:
        """Return once ``payload`` (whole lines) is written and fsynced; else raise LandingUnavailable."""
        if self._closing or self._task is None or self._task.done():
            raise LandingUnavailable("the server is shutting down")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(Write(workstream, day, payload, records), done))
        self._wakeup.set()
        await done

    async def _run(self) -> None:
        try:
            while True:
                if not self._pending:
                    if self._closing:
                        break
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), self._seconds_to_deadline())
                    except TimeoutError:
                        pass
                    self._wakeup.clear()
                await asyncio.sleep(0)  # let the requests that are ready join this group
                batch, self._pending = self._pending, []
                if batch:
                    self._settle(batch, self._files.commit([p.write for p in batch]))
                now = time.monotonic()
                if now >= self._next_sweep or self._files.rotation_due(now):
                    self._maintain(now)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                _LOG.exception("the landing writer stopped")
                self.last_error = f"the landing writer stopped: {exc!r}"  # /healthz answers 503 from now on
            self._fail_pending(LandingUnavailable(f"the landing writer stopped: {exc!r}"))
            raise
        finally:
            self._files.close_all("shutdown")
            self._fail_pending(LandingUnavailable("the server is shutting down"))

    def _settle(self, batch: list[_Pending], outcome: CommitOutcome) -> None:
        metrics.COMMIT_WRITES.observe(len(batch))
        for seconds in outcome.fsync_seconds:
            metrics.FSYNC_SECONDS.observe(seconds)
        failed = False
        for pending, error in zip(batch, outcome.errors):
            if error is None:
                metrics.RECORDS_LANDED.labels(pending.write.workstream).inc(pending.write.records)
                if not pending.done.done():
                    pending.done.set_result(None)
            else:
                failed = True
                reason = _reason(error)
                self.last_error = reason
                metrics.LANDING_ERRORS.labels(errno.errorcode.get(error.errno or 0, "EIO")).inc()
                if not pending.done.done():
                    pending.done.set_exception(LandingUnavailable(reason))
        if failed:
            self._next_sweep = 0.0  # close the failed file into place as soon as it can be
        elif batch:
            self.last_error = None

    def _fail_pending(self, error: LandingUnavailable) -> None:
        batch, self._pending = self._pending, []
        for pending in batch:
            if not pending.done.done():
                pending.done.set_exception(error)

    def _maintain(self, now: float) -> None:
        """Close full and old files; now and then, close leftovers nobody holds."""
        self._files.rotate(now)
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_every
            try:
                recover_all(self._layout)
            except OSError as exc:
                _LOG.warning("sweep of %s failed: %s", self._layout.open_root, exc)

    def _seconds_to_deadline(self) -> float:
        now = time.monotonic()
        deadline = self._next_sweep
        age = self._files.next_age_deadline()
        if age is not None:
            deadline = min(deadline, age)
        return min(max(deadline - now, 0.005), self._sweep_every)

    def _closed(self, reason: str, records: int) -> None:
        metrics.OPEN_FILES.dec()
        metrics.FILES_CLOSED.labels(reason).inc()
