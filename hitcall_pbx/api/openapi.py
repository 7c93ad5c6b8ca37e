"""The OpenAPI 3.1 document, generated from the route registry and its pydantic models,
and a self-contained HTML page listing the operations."""

from __future__ import annotations

import html
import json
import uuid
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, JsonSchemaValue, models_json_schema

from .. import __version__
from .registry import Registry, Route
from .types import BIGINT_MAX

REF = "#/components/schemas/{model}"

DESCRIPTION = """REST API of HitCall, the outbound call-centre dialer.

Authenticate with `POST /api/v1/auth/login` (a session token) or an API token from
`/api/v1/tokens`, and send it as `Authorization: Bearer <token>`. Each operation lists the
roles allowed (`x-roles`) and the scope an API token needs (`x-scope`). Every error has the
body `{"error": code, "message": text, "details": ...}`; invalid input is a 422 whose
`details.fields` names each field. `/healthz`, `/readyz` and `/metrics` (Prometheus text)
need no credentials: expose them only to the monitoring network.
"""


class ErrorBody(BaseModel):
    error: str
    message: str
    details: Any = None


_ERRORS = {
    400: "Malformed request body",
    401: "Missing, unknown, expired or revoked credentials",
    403: "The caller's role or token scope does not allow this",
    404: "Unknown id",
    413: "Request body too large",
    422: "Invalid input; details.fields names each field",
}


def _strip_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null."""
    schema = dict(schema)
    branches = schema.get("anyOf")
    if branches and {"type": "null"} in branches:
        rest = [b for b in branches if b != {"type": "null"}]
        del schema["anyOf"]
        if len(rest) == 1:
            schema.update(rest[0])
        else:
            schema["anyOf"] = rest
    if schema.get("default", 0) is None:
        del schema["default"]
    return schema


def _path_schema(kind: type) -> dict[str, Any]:
    if kind is uuid.UUID:
        return {"type": "string", "format": "uuid"}
    return {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX}


def _query_parameters(model: type[BaseModel], components: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF, mode="validation")
    components.update(schema.get("$defs", {}))
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = _strip_null(prop)
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            param["description"] = prop["description"]
        if prop.get("type") == "array":
            param["style"], param["explode"] = "form", True
        params.append(param)
    return params


def _error(status: int) -> dict[str, Any]:
    return {
        "description": _ERRORS.get(status, "Error"),
        "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}},
    }


def _operation(
    route: Route, refs: dict[tuple[type[BaseModel], JsonSchemaMode], JsonSchemaValue], components: dict[str, Any]
) -> dict[str, Any]:
    params = [
        {"name": n, "in": "path", "required": True, "schema": _path_schema(k)} for n, k in route.path_params.items()
    ]
    if route.query is not None:
        params += _query_parameters(route.query, components)
    notes = []
    if route.roles is None:
        notes.append("No credentials needed.")
    else:
        notes.append("Roles: " + ", ".join(sorted(r.value for r in route.roles)) + ".")
        if route.scope:
            notes.append(f"API token scope: `{route.scope}`.")
        if route.own_agent:
            notes.append("An agent may only name its own agent.")
    if route.description:
        notes.append(route.description)
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "description": " ".join(notes),
        "tags": [route.tag],
        "parameters": params,
    }
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(route.body, "validation")]}},
        }
    elif route.body_media != "application/json":
        op["requestBody"] = {"required": True, "content": {route.body_media: {"schema": {"type": "string"}}}}
    ok: dict[str, Any] = {"description": route.summary}
    if route.response is not None:
        ok["content"] = {"application/json": {"schema": refs[(route.response, "serialization")]}}
    elif route.media is not None:
        ok["content"] = {route.media: {"schema": {"type": "object" if route.media == "application/json" else "string"}}}
    responses: dict[str, Any] = {str(route.status if (route.response or route.media) else 204): ok}
    statuses = []
    if "requestBody" in op:
        statuses += [400, 413, 422]
    if route.roles is not None:
        statuses += [401, 403]
    if route.path_params:
        statuses.append(404)
    if route.query is not None:
        statuses.append(422)
    for status in sorted(set(statuses)):
        responses[str(status)] = _error(status)
    for status, model in route.other_responses:
        schema = refs[(model, "serialization")]
        responses[str(status)] = {"description": model.__name__, "content": {"application/json": {"schema": schema}}}
    responses["default"] = {**_error(0), "description": "Any other error, in the same shape"}
    op["responses"] = responses
    if route.roles is not None:
        op["security"] = [{"bearer": []}]
        op["x-roles"] = sorted(r.value for r in route.roles)
        if route.scope:
            op["x-scope"] = route.scope
    else:
        op["security"] = []
    return op


def build_openapi(registry: Registry) -> dict[str, Any]:
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for route in registry.routes:
        if route.body is not None:
            pairs.append((route.body, "validation"))
        if route.response is not None:
            pairs.append((route.response, "serialization"))
        pairs.extend((model, "serialization") for _, model in route.other_responses)
    pairs = list(dict.fromkeys(pairs))
    schemas, top = models_json_schema(pairs, ref_template=REF)
    refs = {pair: schemas[pair] for pair in pairs}
    components: dict[str, Any] = dict(top.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for route in registry.routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs, components)
    tags = list(dict.fromkeys(r.tag for r in registry.routes))
    return {
        "openapi": "3.1.0",
        "info": {"title": "HitCall API", "version": __version__, "description": DESCRIPTION},
        "tags": [{"name": t} for t in tags],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A session token from POST /api/v1/auth/login, or an API token",
                }
            },
        },
    }


def _schema_name(content: dict[str, Any] | None) -> str:
    if not content:
        return ""
    media, body = next(iter(content.items()))
    ref = body.get("schema", {}).get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref else media


def docs_html(spec: dict[str, Any]) -> str:
    """One HTML page: every operation by tag, with its roles and models; the schemas below."""
    e = html.escape
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>HitCall API</title><style>",
        "body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;width:100%}",
        "td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}",
        "code{background:#f4f4f4;padding:0 3px}.m{font-weight:bold;font-family:monospace}",
        "pre{background:#f8f8f8;padding:8px;overflow:auto}</style></head><body>",
        f"<h1>{e(spec['info']['title'])} {e(spec['info']['version'])}</h1>",
        f"<p>Machine-readable: <a href='/api/v1/openapi.json'>openapi.json</a> (OpenAPI {e(spec['openapi'])}).</p>",
        f"<pre>{e(spec['info']['description'])}</pre>",
    ]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            by_tag.setdefault(op["tags"][0], []).append((method.upper(), path, op))
    for tag in [t["name"] for t in spec["tags"]]:
        out.append(
            f"<h2 id='{e(tag)}'>{e(tag)}</h2><table><tr><th>Operation</th><th>Summary</th>"
            "<th>Roles / scope</th><th>Request</th><th>Response</th></tr>"
        )
        for method, path, op in by_tag.get(tag, []):
            roles = ", ".join(op.get("x-roles", [])) or "public"
            if "x-scope" in op:
                roles += f"<br><code>{e(op['x-scope'])}</code>"
            ok: dict[str, Any] = next((v for k, v in op["responses"].items() if k.startswith("2")), {})
            req = _schema_name(op.get("requestBody", {}).get("content"))
            out.append(
                f"<tr><td><span class='m'>{method}</span> <code>{e(path)}</code></td><td>{e(op['summary'])}</td>"
                f"<td>{roles}</td><td>{_link(req)}</td><td>{_link(_schema_name(ok.get('content')))}</td></tr>"
            )
        out.append("</table>")
    out.append("<h2>Schemas</h2>")
    for name, schema in spec["components"]["schemas"].items():
        out.append(f"<h3 id='schema-{e(name)}'>{e(name)}</h3><pre>{e(json.dumps(schema, indent=2))}</pre>")
    out.append("</body></html>")
    return "".join(out)


def _link(name: str) -> str:
    if not name or "/" in name:
        return html.escape(name)
    return f"<a href='#schema-{html.escape(name)}'>{html.escape(name)}</a>"
