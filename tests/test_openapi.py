"""The OpenAPI document is generated from the registered REST routes and is valid OpenAPI 3.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel
from starlette.responses import Response
from starlette.routing import Mount, Route

from mcp_server.http import RestApi
from mcp_server.server import build_server
from pipeline.config import Settings
from pipeline.jobs import JobManager

# The MCP transports' own endpoints (streamable HTTP, SSE and its message POSTs): not REST.
TRANSPORT_PATHS = {"/mcp", "/sse", "/messages/"}


def _app_routes(tmp_path: Path) -> dict[str, set[str]]:
    """path -> methods of every route on both HTTP apps of a real server (the manager is not started:
    routes are registered when the server is built)."""
    server = build_server(JobManager(Settings(data_dir=tmp_path / "data")))
    out: dict[str, set[str]] = {}
    for app in (server.streamable_http_app(), server.sse_app()):
        for r in app.routes:
            if isinstance(r, Mount) or r.path in TRANSPORT_PATHS:
                continue
            assert isinstance(r, Route), r
            out.setdefault(r.path, set()).update(m.lower() for m in (r.methods or ()) if m != "HEAD")
    return out


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return ([node["$ref"]] if "$ref" in node else []) + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@pytest.fixture(scope="module")
def served_document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """GET /openapi.json from a real server process."""
    from tests.conftest import ServerProcess

    data = tmp_path_factory.mktemp("openapi") / "data"
    data.mkdir()
    srv = ServerProcess("streamable-http", data)
    try:
        srv.wait_healthy()
        r = httpx.get(srv.base + "/openapi.json", timeout=30)
    finally:
        srv.stop()
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    return r.json()


def test_every_registered_route_is_documented_with_its_methods(served_document: dict, tmp_path: Path) -> None:
    routes = _app_routes(tmp_path)
    assert {"/generate", "/status/{job_id}", "/health", "/openapi.json"} <= set(routes)
    documented = {path: set(ops) for path, ops in served_document["paths"].items()}
    # Both ways: no route left out, and nothing documented that the server does not serve.
    assert documented == routes


def test_document_is_valid_openapi_31(served_document: dict) -> None:
    from openapi_spec_validator import OpenAPIV31SpecValidator, validate

    validate(served_document, cls=OpenAPIV31SpecValidator)
    # The validator does not follow every $ref into components: check they all resolve.
    schemas = served_document["components"]["schemas"]
    for ref in _refs(served_document):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref


def test_operations_carry_the_pydantic_schemas(served_document: dict) -> None:
    paths, schemas = served_document["paths"], served_document["components"]["schemas"]
    generate = paths["/generate"]["post"]
    body = generate["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert body.startswith("GenerateRequest") and schemas[body]["properties"]["strength"]["maximum"] == 1.0
    assert {"200", "413", "422", "503"} <= set(generate["responses"])
    assert generate["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ApiError")
    status = paths["/status/{job_id}"]["get"]
    assert status["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("StatusResponse")
    params = {p["name"]: p for p in status["parameters"]}
    assert params["job_id"]["in"] == "path" and params["job_id"]["schema"]["pattern"] == "^[0-9a-f]{32}$"
    assert params["images"]["in"] == "query" and not params["images"]["required"]
    assert set(params["images"]["schema"]["enum"]) == {"url", "base64"}
    jobs = paths["/jobs"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert jobs["type"] == "array" and jobs["items"]["$ref"].endswith("StatusResponse")
    health = paths["/health"]["get"]
    assert health["security"] == [{}] and "401" not in health["responses"]
    assert health["responses"]["503"]["content"]["application/json"]["schema"]["$ref"].endswith("HealthResponse")
    assert paths["/resources"]["get"]["security"] == [{"bearer": []}, {}]
    for path, ops in paths.items():
        for method, op in ops.items():
            assert op["summary"] and op["operationId"], (path, method)


def test_route_declarations_are_checked_where_they_are_written() -> None:
    """A wrong declaration fails when the route is registered, not when someone reads the document."""
    api = RestApi(MCPServer("t"))

    async def handler(request: Any) -> Response:
        """A route"""
        return Response()

    with pytest.raises(TypeError, match="response must be a pydantic model"):
        api.get("/x", response=dict)(handler)
    with pytest.raises(TypeError, match="path_params"):
        api.get("/x/{a}", path_params={"b": str})(handler)

    async def undocumented(request: Any) -> Response:
        return Response()

    with pytest.raises(TypeError, match="summary or a docstring"):
        api.get("/y")(undocumented)

    class Thing(BaseModel):
        n: int

    api.post("/things/{thing_id}", request=Thing, response=list[Thing], responses={409: "exists"})(handler)
    doc = api.document
    op = doc["paths"]["/things/{thing_id}"]["post"]
    assert op["parameters"] == [{"name": "thing_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    assert op["summary"] == "A route" and set(op["responses"]) == {"200", "401", "409"}
    assert "Thing" in doc["components"]["schemas"] or "Thing-Input" in doc["components"]["schemas"]
