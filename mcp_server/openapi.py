"""The REST API's OpenAPI document, generated from the same pydantic models the routes use."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic.json_schema import models_json_schema

from pipeline.schemas import (
    FontInfo,
    GenerateRequest,
    HealthResponse,
    JobAccepted,
    ResourcesResponse,
    StatusResponse,
    StopResponse,
)

_MODELS = (GenerateRequest, JobAccepted, StatusResponse, StopResponse, FontInfo, HealthResponse, ResourcesResponse)


def _ref(model: type) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = _json({"type": "object", "properties": {"detail": {"type": "string"}}}, "error with a reason")
_JOB_ID = [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}]


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    _, defs = models_json_schema([(m, "validation") for m in _MODELS], ref_template="#/components/schemas/{model}")
    paths = {
        "/generate": {"post": {
            "summary": "Start an ad generation job (non-blocking)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(GenerateRequest)}}},
            "responses": {"200": _json(_ref(JobAccepted), "job accepted"), "413": _ERROR, "422": _ERROR,
                          "503": {**_ERROR, "description": "queue full; see Retry-After"}},
        }},
        "/status/{job_id}": {"get": {
            "summary": "Job status, progress, ETA, metrics and result URLs (images=base64 for inline images)",
            "parameters": [*_JOB_ID, {"name": "images", "in": "query", "schema": {"enum": ["url", "base64"]}}],
            "responses": {"200": _json(_ref(StatusResponse), "status"), "404": _ERROR},
        }},
        "/stop/{job_id}": {"post": {
            "summary": "Stop a queued or running job", "parameters": _JOB_ID,
            "responses": {"200": _json(_ref(StopResponse), "outcome"), "404": _ERROR},
        }},
        "/jobs": {"get": {
            "summary": "Recent jobs, newest first",
            "responses": {"200": _json({"type": "array", "items": _ref(StatusResponse)}, "jobs")},
        }},
        "/jobs/{job_id}/{file}": {"get": {
            "summary": "Download a job image (final.png, step1.png, text.png, ...)",
            "parameters": [*_JOB_ID, {"name": "file", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "PNG or JPEG", "content": {"image/png": {}, "image/jpeg": {}}},
                          "404": _ERROR},
        }},
        "/health": {"get": {"summary": "Server, worker and GPU health",
                            "responses": {"200": _json(_ref(HealthResponse), "healthy"),
                                          "503": _json(_ref(HealthResponse), "degraded")}}},
        "/fonts": {"get": {"summary": "Usable fonts",
                           "responses": {"200": _json({"type": "array", "items": _ref(FontInfo)}, "fonts")}}},
        "/resources": {"get": {"summary": "Live CPU/RAM/GPU metrics and model cache",
                               "responses": {"200": _json(_ref(ResourcesResponse), "resources")}}},
        "/dashboard": {"get": {"summary": "HTML dashboard", "responses": {"200": {"description": "HTML page"}}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "adgen REST API", "version": "0.1.0",
                 "description": "The REST face of the adgen MCP server (MCP itself is served at /mcp or /sse)."},
        "paths": paths,
        "components": {"schemas": defs["$defs"]},
    }
