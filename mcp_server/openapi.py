"""The REST API's OpenAPI 3.1 document, generated from the route table that ``http.py`` declares.

Each REST route is registered through one decorator (``RestApi.get``/``post`` in http.py) that
records a ``RouteSpec``: path, method, summary, request and response types, other status codes.
This module turns that table into the document, with every schema from the pydantic models
themselves (``models_json_schema``), so the document cannot drift from the routes: a route
registered without the decorator fails tests/test_openapi.py.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from mcp_server.security import OPEN_PATHS

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
# A parameter: a Python type (Annotated with Field(description=...) for a description) or a JSON schema.
Param = Any
# Another response: its description (the body is an ApiError), or (description, body model).
OtherResponse = str | tuple[str, type[BaseModel]]
_PATH_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


class ApiError(BaseModel):
    """Every REST error body: one line saying which field is wrong and what is allowed."""

    detail: str


@dataclass(frozen=True)
class RouteSpec:
    """What one REST route takes and returns, as declared where it is registered."""

    path: str
    method: HttpMethod
    operation_id: str
    summary: str
    description: str | None = None
    request: type[BaseModel] | None = None  # JSON body
    response: Any = None  # 200 JSON body: a model or list[model]; None with ``content`` for other media
    content: tuple[str, ...] = ()  # media types of a non-JSON 200 body (images, HTML)
    responses: Mapping[int, OtherResponse] = field(default_factory=dict)
    query: Mapping[str, Param] = field(default_factory=dict)
    path_params: Mapping[str, Param] = field(default_factory=dict)  # undeclared ones are strings

    def __post_init__(self) -> None:
        # Fail at import, where the route is declared, not when someone first fetches the document.
        for kind, tp in (("request", self.request), ("response", self.response)):
            if tp is not None and _model_of(tp) is None:
                raise TypeError(f"{self.method} {self.path}: {kind} must be a pydantic model or list[model]")
        if self.response is not None and self.content:
            raise TypeError(f"{self.method} {self.path}: give response (JSON) or content (other media), not both")
        unknown = set(self.path_params) - set(_PATH_PARAM.findall(self.path))
        if unknown:
            raise TypeError(f"{self.method} {self.path}: path_params {sorted(unknown)} are not in the path")


def spec_for(func: Any, path: str, method: HttpMethod, summary: str | None = None, **declared: Any) -> RouteSpec:
    """A route's spec; the summary defaults to the first line of the handler's docstring, the rest of
    the docstring becomes the description."""
    doc = inspect.getdoc(func) or ""
    first, _, rest = doc.partition("\n")
    if not (summary or first):
        raise TypeError(f"{method} {path}: give a summary or a docstring")
    return RouteSpec(path=path, method=method, operation_id=func.__name__, summary=summary or first,
                     description=(doc if summary else rest.strip()) or None, **declared)


def _model_of(tp: Any) -> type[BaseModel] | None:
    """The model in ``Model`` or ``list[Model]``, else None."""
    if get_origin(tp) is list:
        (tp,) = get_args(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _param_schema(param: Param) -> dict[str, Any]:
    return dict(param) if isinstance(param, Mapping) else TypeAdapter(param).json_schema()


def _parameter(name: str, where: str, param: Param) -> dict[str, Any]:
    schema = _param_schema(param)
    out: dict[str, Any] = {"name": name, "in": where, "required": where == "path" or "default" not in schema}
    if "description" in schema:
        out["description"] = schema.pop("description")
    schema.pop("title", None)
    return {**out, "schema": schema}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def build_document(routes: list[RouteSpec], title: str = "adgen REST API") -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``."""
    # Request bodies in validation mode, responses in serialization mode; a model whose two
    # schemas differ gets two components (Name-Input, Name-Output), which pydantic names.
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(ApiError, "serialization"): None}
    for r in routes:
        if r.request is not None:
            wanted[(r.request, "validation")] = None
        for tp in (r.response, *(o[1] for o in r.responses.values() if isinstance(o, tuple))):
            model = _model_of(tp)
            if model is not None:
                wanted[(model, "serialization")] = None
    refs, defs = models_json_schema(list(wanted), ref_template="#/components/schemas/{model}")

    def body(tp: Any) -> dict[str, Any]:
        ref = refs[(_model_of(tp), "serialization")]  # type: ignore[index]
        return {"type": "array", "items": ref} if get_origin(tp) is list else ref

    error = _json(refs[(ApiError, "serialization")], "error: which field is wrong and what is allowed")
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r, refs, body, error)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": _version(),
                 "description": "The REST face of the adgen MCP server (MCP itself is served at /mcp or /sse)."},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Required on every route but /health when the server "
                                           "sets ADGEN_TOKEN; the dashboard also takes ?token=."}},
        },
    }


def _operation(r: RouteSpec, refs: dict[Any, Any], body: Callable[[Any], dict[str, Any]],
               error: dict[str, Any]) -> dict[str, Any]:
    """One route's operation object: parameters, request body, responses, security."""
    op: dict[str, Any] = {"operationId": r.operation_id, "summary": r.summary}
    if r.description:
        op["description"] = r.description
    params = [_parameter(n, "path", r.path_params.get(n, str)) for n in _PATH_PARAM.findall(r.path)]
    params += [_parameter(n, "query", p) for n, p in r.query.items()]
    if params:
        op["parameters"] = params
    if r.request is not None:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": refs[(r.request, "validation")]}}}
    if r.response is not None:
        ok = _json(body(r.response), "success")
    elif r.content:
        ok = {"description": "success", "content": {media: {} for media in r.content}}
    else:
        ok = {"description": "success"}
    responses: dict[str, Any] = {"200": ok}
    for code, other in sorted(r.responses.items()):
        described, model = (other, None) if isinstance(other, str) else other
        responses[str(code)] = {**(_json(body(model), "") if model else error), "description": described}
    if r.path not in OPEN_PATHS:  # the bearer token is required only when the server sets ADGEN_TOKEN
        op["security"] = [{"bearer": []}, {}]
        responses.setdefault("401", {**error, "description": "missing or wrong bearer token (ADGEN_TOKEN set)"})
    else:
        op["security"] = [{}]
    op["responses"] = responses
    return op

def _version() -> str:
    try:
        return version("adgen")
    except PackageNotFoundError:  # running from a tree that was never installed
        return "0.0.0"
