"""One writer at a time per output folder: ``DIR/_lock.json``.

On a local disk the lock is an ``fcntl.flock`` on that file: the kernel enforces it and
releases it when its holder dies, even by ``kill -9``, so a dead holder never blocks the
output. The file itself is never deleted (deleting a locked file would let a second writer
lock a new one); it only says who holds it, for the message a refused run prints.

Beam's FileSystems offers no conditional create, so on an object store (gs://, s3://) the lock
is a lease: the holder writes the file with a random token and rewrites it every
``HEARTBEAT`` seconds; a lock whose heartbeat is older than ``LEASE`` is taken to be dead. A
taker writes its token, waits, and reads it back. That narrows the race of two takers to the
same moment but does not close it: on object stores, run one scheduler per output.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from pipelines.errors import OutputBusy, RunError
from transforms import files
from transforms.layout import OutputLayout, is_local

__all__ = ["HEARTBEAT", "LEASE", "hold_output"]

HEARTBEAT = 30.0
LEASE = 600.0


def _holder(run_id: str, token: str) -> dict[str, Any]:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(), "since": now,
            "heartbeat": time.time(), "token": token, "released": False}


def _describe(holder: dict[str, Any]) -> str:
    return (f"run {holder.get('run_id', '?')} (host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, "
            f"since {holder.get('since', '?')})")


@contextmanager
def hold_output(layout: OutputLayout, run_id: str) -> Iterator[None]:
    """Hold the output for the block; a second holder is refused at once with ``OutputBusy``."""
    if is_local(layout.root):
        with _local_lock(layout, run_id):
            yield
    else:
        with _lease(layout, run_id):
            yield


@contextmanager
def _local_lock(layout: OutputLayout, run_id: str) -> Iterator[None]:
    import fcntl

    path = layout.lock_file()
    try:
        os.makedirs(layout.root, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RunError(f"cannot write to output {layout.root}: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(os.pread(fd, 1 << 16, 0) or b"{}")
            except ValueError:
                holder = {}
            raise OutputBusy(f"output {layout.root} is in use by {_describe(holder)}; "
                             "wait for it to finish (one writer at a time)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder(run_id, "")).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"released": True, "run_id": run_id}).encode(), 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read(path: str) -> dict[str, Any] | None:
    try:
        data = files.read_json(path)
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - a torn lock file is no holder
        return None
    return data if isinstance(data, dict) else None


@contextmanager
def _lease(layout: OutputLayout, run_id: str, settle: float = 2.0) -> Iterator[None]:
    path = layout.lock_file()
    held = _read(path) if files.exists(path) else None
    if held and not held.get("released") and time.time() - float(held.get("heartbeat", 0)) < LEASE:
        raise OutputBusy(f"output {layout.root} is in use by {_describe(held)}; wait for it to finish "
                         f"(a holder that died is taken to be gone {LEASE:.0f} s after its last heartbeat)")
    token = uuid.uuid4().hex
    files.write_json(path, _holder(run_id, token))
    time.sleep(settle)
    mine = _read(path)
    if not mine or mine.get("token") != token:
        raise OutputBusy(f"output {layout.root} was taken at the same moment by {_describe(mine or {})}")
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT):
            files.write_json(path, {**_holder(run_id, token), "since": mine.get("since")})

    thread = threading.Thread(target=beat, name="throughput-lock-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        files.write_json(path, {"released": True, "run_id": run_id, "token": token})
