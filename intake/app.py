"""The intake ASGI application (Starlette): the seed's endpoint, its batch sibling, health, metrics.

``build_app(settings)`` builds one worker's application; ``app_from_environment`` is the factory
that uvicorn's workers call (``throughput serve`` puts the settings in the environment).

Order of checks for a POST: the key (401, before any body is read), the size (413), the body
(400 with the pipeline's error), then landing (202 once written and fsynced, or 503).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from intake import metrics
from intake.keys import KeyRing
from intake.landing import LandingLayout
from intake.logs import AccessLog, setup_logging
from intake.openapi import openapi_document
from intake.records import (
    MAX_RECORD_BYTES,
    BatchTooLarge,
    BodyChecker,
    Rejection,
    received_now,
    rejection_list,
)
from intake.settings import Settings, read_workstreams
from intake.writer import GroupCommitWriter, LandingUnavailable

__all__ = ["MAX_BATCH_BYTES", "RETRY_AFTER_SECONDS", "app_from_environment", "build_app"]

MAX_BATCH_BYTES = 64 << 20  # a batch request's body; 10,000 bodies of 6 KiB each
RETRY_AFTER_SECONDS = 30
# A batch is checked on the event loop, this many bodies at a time (about 10 ms each), other
# requests served in between. A helper thread measured slower: pyarrow's calls in the check
# hand the GIL back and forth with the busy loop, each hand-off waiting up to its 5 ms.
_CHECK_STEP = 1000
_JSON = "application/json"
_JSON_LINES_TYPES = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/jsonlines")
_LOG = logging.getLogger("throughput.intake")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=_JSON, headers=headers)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(status, {"error_code": code, "error_field": None, "error_message": message}, headers)


_RECEIVED = orjson.dumps({"message": "Data successfully received."})
_UNAUTHORIZED = orjson.dumps({"error_code": "unauthorized", "error_field": None,
                              "error_message": "missing or invalid x-api-key for this workstream"})


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    """The whole body, or ``_TooLarge`` as soon as Content-Length or the bytes read pass ``limit``."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class IntakeApi:
    """The endpoints, over one configuration, one key ring and one landing writer."""

    def __init__(self, keys: KeyRing, checker: BodyChecker, writer: GroupCommitWriter) -> None:
        self.keys = keys
        self.checker = checker
        self.writer = writer
        self.openapi = orjson.dumps(openapi_document())

    def _allowed(self, request: Request) -> str | None:
        workstream: str = request.path_params["workstream_id"]
        request.scope["intake"] = {"workstream_id": workstream}
        return workstream if self.keys.allows(workstream, request.headers.get("x-api-key")) else None

    async def task_completed(self, request: Request) -> Response:
        """The seed's endpoint: one body; 202 once it is durable."""
        workstream = self._allowed(request)
        if workstream is None:
            return Response(_UNAUTHORIZED, 401, media_type=_JSON)
        try:
            raw = await _read_body(request, MAX_RECORD_BYTES)
        except _TooLarge:
            return _error(413, "record_too_large", f"the body is over the {MAX_RECORD_BYTES}-byte limit")
        received_at = received_now()
        outcome = self.checker.line(raw, workstream, received_at)
        if isinstance(outcome, Rejection):
            metrics.RECORDS_REJECTED.labels(outcome.code).inc()
            request.scope["intake"]["error_code"] = outcome.code
            status = 413 if outcome.code == "record_too_large" else 400
            return _json(status, outcome.as_dict())
        try:
            await self.writer.land(workstream, received_at[:10], outcome + b"\n", 1)
        except LandingUnavailable as exc:
            return self._unavailable(exc)
        request.scope["intake"]["records"] = 1
        return Response(_RECEIVED, 202, media_type=_JSON)

    async def batch(self, request: Request) -> Response:
        """Up to 10,000 bodies (a JSON array or JSON lines); the accepted ones land with one fsync."""
        workstream = self._allowed(request)
        if workstream is None:
            return Response(_UNAUTHORIZED, 401, media_type=_JSON)
        try:
            raw = await _read_body(request, MAX_BATCH_BYTES)
        except _TooLarge:
            return _error(413, "batch_too_large", f"the batch body is over the {MAX_BATCH_BYTES}-byte limit")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        json_lines = True if content_type in _JSON_LINES_TYPES else None
        received_at = received_now()
        try:
            bodies = self.checker.bodies(raw, json_lines)
        except BatchTooLarge as exc:
            return _error(413, "batch_too_large", str(exc))
        if isinstance(bodies, Rejection):
            request.scope["intake"]["error_code"] = bodies.code
            return _json(400, bodies.as_dict())
        accepted: list[bytes] = []
        rejected: list[tuple[int, Rejection]] = []
        for start in range(0, len(bodies), _CHECK_STEP):
            if start:
                await asyncio.sleep(0)  # let other requests in between steps
            step_accepted, step_rejected = self.checker.check(
                bodies, start, start + _CHECK_STEP, workstream, received_at)
            accepted += step_accepted
            rejected += step_rejected
        for _, rejection in rejected:
            metrics.RECORDS_REJECTED.labels(rejection.code).inc()
        if accepted:
            try:
                await self.writer.land(workstream, received_at[:10], b"\n".join(accepted) + b"\n", len(accepted))
            except LandingUnavailable as exc:
                return self._unavailable(exc)
        request.scope["intake"]["records"] = len(accepted)
        return _json(202, {"accepted": len(accepted), "rejected": rejection_list(rejected)})

    async def healthz(self, request: Request) -> Response:
        error = self.writer.last_error
        if error is not None:
            return _json(503, {"status": "landing unavailable", "error": error})
        return _json(200, {"status": "ok"})

    async def metrics(self, request: Request) -> Response:
        return Response(metrics.exposition(), 200, media_type=metrics.CONTENT_TYPE)

    async def openapi_json(self, request: Request) -> Response:
        return Response(self.openapi, 200, media_type=_JSON)

    def _unavailable(self, exc: LandingUnavailable) -> Response:
        return _error(503, "landing_unavailable", f"nothing landed, retry later ({exc.reason})",
                      headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _route(path: str) -> str:
    if path.startswith("/v1/workstreams/"):
        if path.endswith("/task_completed"):
            return "task_completed"
        if path.endswith("/task_completed/batch"):
            return "batch"
    if path in ("/healthz", "/metrics", "/openapi.json"):
        return path
    return "other"


class _Observed:
    """Pure ASGI middleware: request metrics and one access-log line per request."""

    def __init__(self, app: ASGIApp, log: AccessLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            elapsed = time.perf_counter() - started
            route = _route(scope["path"])
            metrics.REQUESTS.labels(route, str(status)).inc()
            metrics.REQUEST_SECONDS.labels(route).observe(elapsed)
            if self.log.enabled:
                client = scope.get("client")
                entry: dict[str, Any] = {
                    "method": scope["method"], "path": scope["path"], "status": status,
                    "ms": round(elapsed * 1000, 3), "client": client[0] if client else None,
                }
                entry.update(scope.get("intake") or {})
                self.log.record(entry)


def build_app(settings: Settings) -> ASGIApp:
    """One worker's application: reads the configuration, owns its landing writer."""
    config = read_workstreams(settings.workstreams)
    keys = KeyRing.from_config(config)
    layout = LandingLayout(settings.landing)
    layout.prepare()
    writer = GroupCommitWriter(layout, settings.max_file_bytes, settings.max_file_seconds)
    api = IntakeApi(keys, BodyChecker(config), writer)
    log = AccessLog(settings.access_log)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Keep the start-up heap (pydantic's schemas, Starlette; Beam too when something imports it)
        # out of the collector's full passes, which can pause a busy worker for milliseconds.
        gc.collect()
        gc.freeze()
        await writer.start()
        await log.start()
        watcher = _watch_supervisor(settings.supervisor_pid)
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            await writer.close()
            await log.close()
            metrics.process_exited()

    routes = [
        Route("/v1/workstreams/{workstream_id}/task_completed", api.task_completed, methods=["POST"]),
        Route("/v1/workstreams/{workstream_id}/task_completed/batch", api.batch, methods=["POST"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/openapi.json", api.openapi_json, methods=["GET"]),
    ]
    return _Observed(Starlette(routes=routes, lifespan=lifespan), log)


def _watch_supervisor(supervisor_pid: int | None) -> asyncio.Task[None] | None:
    """In a worker process: shut down gracefully (close files) if the supervisor dies."""
    if supervisor_pid is None or supervisor_pid == os.getpid():
        return None

    async def watch() -> None:
        while os.getppid() == supervisor_pid:
            await asyncio.sleep(1.0)
        _LOG.error("supervisor %d is gone; worker %d shuts down", supervisor_pid, os.getpid())
        os.kill(os.getpid(), signal.SIGTERM)

    return asyncio.get_running_loop().create_task(watch(), name="supervisor-watch")


def app_from_environment() -> ASGIApp:
    """uvicorn's factory in each worker: the settings come from ``throughput serve``."""
    setup_logging()
    return build_app(Settings.from_environment())
