"""Prometheus metrics of the intake server, summed over its worker processes.

``throughput serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a private folder before any worker
starts, so each worker's counters live in memory-mapped files there and ``GET /metrics`` (served
by whichever worker) reports the sum; without that variable (a test importing the app) the
metrics are the process's own.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as _multiprocess

__all__ = [
    "COMMIT_WRITES",
    "CONTENT_TYPE",
    "FILES_CLOSED",
    "FSYNC_SECONDS",
    "LANDING_ERRORS",
    "OPEN_FILES",
    "RECORDS_LANDED",
    "RECORDS_REJECTED",
    "REQUESTS",
    "REQUEST_SECONDS",
    "exposition",
    "process_exited",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter("intake_requests_total", "HTTP requests answered, by route and status code", ["route", "status"])
REQUEST_SECONDS = Histogram(
    "intake_request_seconds", "Time from request to answer, by route", ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
RECORDS_LANDED = Counter("intake_records_landed_total", "Records written and fsynced into landing files", ["workstream_id"])
RECORDS_REJECTED = Counter("intake_records_rejected_total", "Bodies rejected by validation, by error code", ["error_code"])
FSYNC_SECONDS = Histogram(
    "intake_fsync_seconds", "Latency of one landing file's fsync in a group commit",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
COMMIT_WRITES = Histogram(
    "intake_commit_requests", "Requests that shared one group commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
OPEN_FILES = Gauge("intake_open_files", "Landing files open for writing", multiprocess_mode="livesum")
FILES_CLOSED = Counter("intake_files_closed_total", "Landing files closed, by reason (size, age, shutdown, error)", ["reason"])
LANDING_ERRORS = Counter("intake_landing_errors_total", "Failed landing writes (answered 503), by errno", ["errno"])


def exposition() -> bytes:
    """The Prometheus text format of every worker's metrics."""
    if os.environ.get(_MULTIPROCESS_VARIABLE):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()


def process_exited() -> None:
    """Drop this process's live gauges (its open files) from the sum."""
    if os.environ.get(_MULTIPROCESS_VARIABLE):
        _multiprocess.mark_process_dead(os.getpid())
