"""The OpenAPI description of the intake API, its body schema derived from ``TaskCompleted``.

The request body lists the model's fields less the two envelope fields that the server sets
from the request (``workstream_id`` from the path, ``received_at`` from its clock): the seed's
body fields, with ``task_measurements`` that the seed's own example sends.
"""

from __future__ import annotations

import json
from typing import Any

from intake.records import BODY_FIELDS, MAX_BATCH_RECORDS, MAX_RECORD_BYTES
from schemas.record import TaskCompleted

__all__ = ["SEED_EXAMPLE", "openapi_document"]

SEED_EXAMPLE: dict[str, Any] = {  # the seed's example request body, served as the OpenAPI example
    "worker_id": "[email protected]",
    "task_id": "032d6802-0efa-46de-a73c-6c24f094dfcf",
    "task_url": "https://taskus.com/annotate/123412",
    "task_count": 10,
    "subtask_count": 10,
    "use_case_id": "305ea07b-1d24-4f8f-8e1d-aae27cb07840",
    "task_definition_id": "4ed59e6b-bf4b-4f33-a1dc-4015d63eef59",
    "task_started_at": "2020-12-22T09:13:24.127Z",
    "task_completed_at": "2020-12-22T10:13:24.127Z",
    "duration": 3600,
    "task_created_at": "2020-12-22T10:13:24.127Z",
    "task_measurements": {"attribute_1_count": 340, "attribute_1_label": "Words"},
    "data_source": "api",
    "task_metadata": {"Person Label": "29", "Date Label": "120", "Organization Label": "132"},
    "dataset_id": "6c24f094dfcf",
    "asset_id": "6c24f094dfcf",
    "unique_id": "032d6802-0efa-46de-a73c-6c24f094dfcf",
    "replace_duplicate": True,
}


def _body_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    model = TaskCompleted.model_json_schema()
    text = json.dumps(model).replace('"#/$defs/', '"#/components/schemas/')
    model = json.loads(text)
    properties = {name: spec for name, spec in model["properties"].items() if name in BODY_FIELDS}
    return {
        "title": "TaskCompletedBody",
        "description": "One task_completed body. Fields not listed are kept losslessly (extra_fields).",
        "type": "object",
        "properties": properties,
        "required": [name for name in model.get("required", []) if name in properties],
        "additionalProperties": True,
        "example": SEED_EXAMPLE,
    }, model.get("$defs", {})


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document served at ``/openapi.json``."""
    body, defs = _body_schema()
    workstream = {"name": "workstream_id", "in": "path", "required": True, "schema": {"type": "string"},
                  "description": "CloudFactory platform WorkStream ID"}
    unavailable = {**_error("The landing disk is full or unwritable: nothing landed; retry after Retry-After seconds"),
                   "headers": {"Retry-After": {"schema": {"type": "integer"}}}}
    common = {
        "400": _error("The body breaks a record rule: the pipeline's error code, field and message"),
        "401": _error("Missing or wrong x-api-key, or a key of another workstream, or an unknown workstream"),
        "503": unavailable,
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Throughput intake", "version": "1",
                 "description": "Submit task completed info; accepted bodies land for the nightly throughput run."},
        "paths": {
            "/v1/workstreams/{workstream_id}/task_completed": {"post": {
                "operationId": "postTaskCompleted",
                "summary": "Submit one task_completed body",
                "parameters": [workstream],
                "security": [{"apiKey": []}],
                "requestBody": {"required": True,
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskCompletedBody"}}}},
                "responses": {
                    "202": {"description": "Written and fsynced to a landing file",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Received"}}}},
                    **common,
                    "413": _error(f"The body is over {MAX_RECORD_BYTES} bytes"),
                },
            }},
            "/v1/workstreams/{workstream_id}/task_completed/batch": {"post": {
                "operationId": "postTaskCompletedBatch",
                "summary": f"Submit up to {MAX_BATCH_RECORDS} bodies: a JSON array, or JSON lines",
                "parameters": [workstream],
                "security": [{"apiKey": []}],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"type": "array", "maxItems": MAX_BATCH_RECORDS,
                                                    "items": {"$ref": "#/components/schemas/TaskCompletedBody"}}},
                    "application/x-ndjson": {"schema": {"type": "string",
                                                        "description": "one TaskCompletedBody per line"}},
                }},
                "responses": {
                    "202": {"description": "The accepted bodies are written and fsynced (one fsync); the rejected ones are not",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchResult"}}}},
                    **common,
                    "413": _error(f"The batch is too large: over {MAX_BATCH_RECORDS} bodies or over the byte limit"),
                },
            }},
            "/healthz": {"get": {"operationId": "health", "summary": "Liveness and landing health",
                                 "responses": {"200": {"description": "Serving; the latest landing write succeeded"},
                                               "503": {"description": "The latest landing write failed"}}}},
            "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics",
                                 "responses": {"200": {"description": "Prometheus text format"}}}},
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
            "schemas": {
                **defs,
                "TaskCompletedBody": body,
                "Received": {"type": "object", "required": ["message"], "properties": {
                    "message": {"type": "string", "const": "Data successfully received."}}},
                "Error": {"type": "object", "required": ["error_code", "error_message"], "properties": {
                    "error_code": {"type": "string", "description": "the pipeline's error code, or unauthorized, "
                                   "record_too_large, batch_too_large, landing_unavailable"},
                    "error_field": {"type": ["string", "null"], "description": "API name of the field at fault"},
                    "error_message": {"type": "string"}}},
                "BatchResult": {"type": "object", "required": ["accepted", "rejected"], "properties": {
                    "accepted": {"type": "integer", "description": "Bodies landed"},
                    "rejected": {"type": "array", "items": {"type": "object", "properties": {
                        "index": {"type": "integer", "description": "0-based: array element, or non-blank line"},
                        "error_code": {"type": "string"},
                        "error_field": {"type": ["string", "null"]},
                        "error_message": {"type": "string"}}}}}},
            },
        },
    }
