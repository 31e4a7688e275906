"""The server's processes: a supervisor and N uvicorn workers, each on its own listening socket.

Every worker binds the port with ``SO_REUSEPORT``, so the kernel spreads new connections over
the workers' sockets. (With one shared socket, as uvicorn's own ``--workers`` has it, whichever
worker is idle accepts every connection queued at that moment: a client opening 8 connections
at once measured all 8 on one worker about two times in three, leaving a core idle.)

The supervisor:

* checks that the port is free, then starts the workers;
* restarts a worker that dies (a worker that dies before it serves, three times in a row, stops
  the server: its application cannot start);
* on SIGTERM or SIGINT, asks each worker to stop (SIGTERM: it stops accepting, answers what is
  in flight, closes its landing files) and exits 0 once they have;
* on SIGHUP, replaces the workers one by one, each new one serving before its old one stops:
  the configuration is read again with no gap in service.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event

__all__ = ["Supervisor", "bind_probe"]

_LOG = logging.getLogger("throughput.intake")
_STOP_SECONDS = 60.0  # a worker that has not stopped by then is killed
_READY_SECONDS = 60.0
_GIVE_UP_AFTER = 3  # workers in a row that die before serving
_SPAWN = multiprocessing.get_context("spawn")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def bind_probe(host: str, port: int) -> int:
    """The port to serve on: ``port`` if nobody holds it (``OSError`` if someone does), or a free
    one for port 0. Bound without ``SO_REUSEPORT``, so it fails even against another server
    that uses it."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        return int(probe.getsockname()[1])


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _worker_main(host: str, port: int, ready: Event) -> None:  # pragma: no cover - runs in a child process
    """One worker: its own socket, uvicorn with the app factory; ``ready`` once it serves."""
    import uvicorn

    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    config = uvicorn.Config("intake.app:app_from_environment", factory=True, loop=loop, http="httptools",
                            lifespan="on", access_log=False, log_level="warning", server_header=False,
                            timeout_graceful_shutdown=30)
    server = uvicorn.Server(config)

    def report_ready() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            ready.set()

    threading.Thread(target=report_ready, daemon=True).start()
    server.run(sockets=[_listening_socket(host, port)])


@dataclass
class _Worker:
    process: BaseProcess
    ready: Event
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int | None:
        return self.process.pid


class Supervisor:
    """Runs ``workers`` worker processes on ``host:port`` until SIGTERM or SIGINT."""

    def __init__(self, host: str, port: int, workers: int) -> None:
        self.host = host
        self.port = port
        self.count = workers
        self.workers: list[_Worker] = []
        self._signals: list[int] = []
        self._failures = 0

    def run(self) -> int:
        """0 after a clean stop; 1 when the workers cannot start."""
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, lambda sig, frame: self._signals.append(sig))
        self.workers = [self._start() for _ in range(self.count)]
        try:
            while True:
                time.sleep(0.2)
                while self._signals:
                    sig = self._signals.pop(0)
                    if sig == signal.SIGHUP:
                        self._replace_all()
                    else:
                        _LOG.info("received %s: stopping %d worker(s)", signal.Signals(sig).name, len(self.workers))
                        return 0
                if not self._keep_alive():
                    return 1
        finally:
            self._stop_all()

    def _start(self) -> _Worker:
        ready = _SPAWN.Event()
        process = _SPAWN.Process(target=_worker_main, args=(self.host, self.port, ready), name="intake-worker")
        process.start()
        return _Worker(process, ready)

    def _keep_alive(self) -> bool:
        for index, worker in enumerate(self.workers):
            if worker.process.is_alive():
                if worker.ready.is_set():
                    self._failures = 0
                continue
            served = worker.ready.is_set()
            self._failures = 0 if served else self._failures + 1
            _LOG.error("worker %s exited (code %s)%s", worker.pid, worker.process.exitcode,
                       "" if served else " before it served")
            if self._failures >= _GIVE_UP_AFTER:
                _LOG.error("workers cannot start; stopping (see the errors above)")
                return False
            self.workers[index] = self._start()
        return True

    def _replace_all(self) -> None:
        _LOG.info("received SIGHUP: replacing %d worker(s) one by one", len(self.workers))
        for index, old in enumerate(list(self.workers)):
            new = self._start()
            deadline = time.monotonic() + _READY_SECONDS
            while not new.ready.is_set() and new.process.is_alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not new.ready.is_set():
                _LOG.error("new worker %s did not start; keeping worker %s and the rest", new.pid, old.pid)
                self._stop([new])
                return
            self.workers[index] = new
            self._stop([old])

    def _stop_all(self) -> None:
        self._stop(self.workers)

    @staticmethod
    def _stop(workers: list[_Worker]) -> None:
        for worker in workers:
            if worker.process.is_alive() and worker.pid is not None:
                os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_SECONDS
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                _LOG.error("worker %s did not stop in %.0f s; killing it", worker.pid, _STOP_SECONDS)
                worker.process.kill()
                worker.process.join()
