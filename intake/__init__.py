"""The intake server (``throughput serve``, SPEC 9): the seed's API in front of the nightly pipeline.

Clients POST task_completed bodies; the server checks the workstream's API key, validates each
body with the pipeline's own ``schemas.record`` code, and appends the accepted ones to JSON-lines
landing files that ``throughput run --input 'DIR/**/*.jsonl'`` ingests. It knows nothing of Beam.

Modules: ``settings`` (options and the workstream configuration), ``keys`` (API keys),
``records`` (bodies to landing lines or rejections), ``landing`` (files: open, close into place,
recover), ``writer`` (group commit), ``app`` (the ASGI application), ``openapi``, ``metrics``,
``logs``, ``supervisor`` (the worker processes) and ``cli`` (the commands).
"""

__all__: list[str] = []
