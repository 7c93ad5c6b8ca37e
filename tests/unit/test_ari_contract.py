"""The ARI client against the official ARI Swagger 1.1 spec (Asterisk 22).

Every declared REST endpoint must exist in the spec with the same method, path parameters, query parameters
and body keys; every resource and event model must match its spec model property by property.
"""

from __future__ import annotations

import json
import os
import re
import types
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import aiohttp
import pytest
from pydantic import BaseModel

from hitcall_pbx.ari import models
from hitcall_pbx.ari.events import EVENT_MODELS, AriEvent
from hitcall_pbx.ari.rest import ENDPOINTS, AriRest, Endpoint

DOCS = Path(os.environ.get("HITCALL_ARI_DOCS") or Path(__file__).parents[2].parent / "shared" / "ari-api-docs")

PRIMITIVES: dict[str, type] = {
    "string": str,
    "int": int,
    "long": int,
    "double": float,
    "boolean": bool,
    "Date": datetime,
    "object": dict,
}

RESOURCE_MODELS = [
    cls
    for cls in vars(models).values()
    if isinstance(cls, type) and issubclass(cls, models.AriModel) and cls is not models.AriModel
]


class Swagger:
    def __init__(self, docs: Path) -> None:
        self.operations: dict[tuple[str, str], dict[str, Any]] = {}
        self.models: dict[str, dict[str, Any]] = {}
        for file in sorted(docs.glob("*.json")):
            spec = json.loads(file.read_text())
            for api in spec.get("apis", []):
                for op in api.get("operations", []):
                    self.operations[(api["path"], op["httpMethod"])] = op
            for name, model in spec.get("models", {}).items():
                assert name not in self.models, f"model {name} defined twice"
                self.models[name] = model

    def params(self, op: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in op.get("parameters", []) if p["paramType"] == kind}

    def properties(self, name: str) -> dict[str, dict[str, Any]]:
        properties: dict[str, dict[str, Any]] = self.models[name].get("properties", {})
        return properties


@pytest.fixture(scope="module")
def swagger() -> Swagger:
    if not (DOCS / "channels.json").is_file():
        pytest.fail(f"ARI Swagger spec not found in {DOCS} (set HITCALL_ARI_DOCS)")
    return Swagger(DOCS)


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def compatible(swagger_type: str, annotation: Any) -> bool:
    annotation = _strip_optional(annotation)
    if item := re.fullmatch(r"List\[(\w+)\]", swagger_type):
        return get_origin(annotation) is list and compatible(item[1], get_args(annotation)[0])
    if expected := PRIMITIVES.get(swagger_type):
        if get_origin(annotation) is Literal:
            return all(type(arg) is expected for arg in get_args(annotation))
        return (get_origin(annotation) or annotation) is expected
    return annotation is getattr(models, swagger_type, None)


def check_model(model: type[BaseModel], properties: dict[str, dict[str, Any]], *, discriminator: str = "") -> None:
    fields = model.model_fields
    assert set(fields) == set(properties), f"fields differ from the spec: {set(fields) ^ set(properties)}"
    for name, prop in properties.items():
        field = fields[name]
        assert compatible(prop["type"], field.annotation), f"{name}: {field.annotation} is not a {prop['type']}"
        if name == discriminator:
            continue  # the event models default their own type literal, so that code can build them directly
        assert field.is_required() == bool(prop.get("required")), f"{name}: required must be {prop.get('required')}"


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_endpoint_matches_swagger(swagger: Swagger, name: str) -> None:
    endpoint = ENDPOINTS[name]
    op = swagger.operations.get((endpoint.path, endpoint.method))
    assert op is not None, f"{endpoint.method} {endpoint.path} is not in the spec"
    assert endpoint.placeholders == set(swagger.params(op, "path"))
    assert endpoint.query <= set(swagger.params(op, "query")), endpoint.query - set(swagger.params(op, "query"))
    assert endpoint.body <= set(swagger.params(op, "body")), endpoint.body - set(swagger.params(op, "body"))
    required = {n for kind in ("query", "body") for n, p in swagger.params(op, kind).items() if p.get("required")}
    assert required <= endpoint.query | endpoint.body, f"required parameters not declared: {required}"


def test_originate_variables_go_in_the_body(swagger: Swagger) -> None:
    endpoint = ENDPOINTS["channels.originate"]
    assert endpoint == Endpoint("POST", "/channels/{channelId}", endpoint.query, frozenset({"variables"}))
    assert swagger.params(swagger.operations[(endpoint.path, "POST")], "body")["variables"]["dataType"] == "containers"


@pytest.mark.parametrize("model", RESOURCE_MODELS, ids=lambda m: m.__name__)
def test_resource_model_matches_swagger(swagger: Swagger, model: type[models.AriModel]) -> None:
    assert model.__name__ in swagger.models
    check_model(model, swagger.properties(model.__name__))


def test_event_base_matches_swagger(swagger: Swagger) -> None:
    assert swagger.models["Message"]["discriminator"] == "type"
    check_model(AriEvent, swagger.properties("Message") | swagger.properties("Event"))


@pytest.mark.parametrize("event_type", sorted(EVENT_MODELS))
def test_event_model_matches_swagger(swagger: Swagger, event_type: str) -> None:
    model = EVENT_MODELS[event_type]
    assert event_type in swagger.models["Event"]["subTypes"]
    assert model.model_fields["type"].default == event_type
    base = swagger.properties("Message") | swagger.properties("Event")
    check_model(model, base | swagger.properties(event_type), discriminator="type")


async def test_call_rejects_undeclared_parameters() -> None:
    async with aiohttp.ClientSession() as session:
        rest = AriRest(session, "http://127.0.0.1:9/ari", {})
        with pytest.raises(ValueError, match="channelID"):
            await rest._call("channels.hangup", {"channelId": "c1"}, {"channelID": "c1"})
        with pytest.raises(ValueError, match="varibles"):
            await rest._call("channels.originate", {"channelId": "c1"}, {"endpoint": "Local/1@x"}, {"varibles": {}})
        with pytest.raises(ValueError, match="bridgeId"):
            await rest._call("channels.answer", {"bridgeId": "b1"}, None)
