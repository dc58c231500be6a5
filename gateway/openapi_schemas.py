"""The JSON shapes of the API as OpenAPI 3.0 schemas (``components/schemas``): what each
endpoint accepts and what it answers, OpenWhisk's entity JSON and its error JSON.

Response schemas are what the gateway really sends (the schemathesis run in
``tests/hostile_input`` checks every answer against them); request schemas describe what a
valid body looks like, so generated bodies reach the handlers' deeper checks.
"""

from __future__ import annotations

from typing import Any

from bus.requests import SEQUENCE
from gateway.bodies import MAX_JSON_DEPTH
from runtimes.kinds import supported_kinds

Schema = dict[str, Any]

# OpenWhisk's entity name (ent/EntityPath.scala); "_" is a valid name and the caller's namespace.
ENTITY_NAME_PATTERN = r"^([A-Za-z0-9_]|[A-Za-z0-9_][A-Za-z0-9_@ .&-]{0,254}[A-Za-z0-9_@.&-])$"
ACTIVATION_ID_PATTERN = r"^[0-9a-f]{32}$"
SEMVER_PATTERN = r"^[0-9]+\.[0-9]+\.[0-9]+$"

ANY: Schema = {"description": f"Any JSON value (nested at most {MAX_JSON_DEPTH} deep)."}
STRING: Schema = {"type": "string"}
BOOLEAN: Schema = {"type": "boolean"}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: tuple[str, ...] = (), **properties: Schema) -> Schema:
    out: Schema = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    return out


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def count_of(collection: str) -> Schema:
    """``?count=true``: ``{"<collection>": N}``."""
    return obj((collection,), **{collection: {"type": "integer", "minimum": 0}})


def list_or_count(item: str, collection: str) -> Schema:
    return {"oneOf": [array(ref(item)), count_of(collection)]}


_ENTITY_HEAD = {
    "namespace": STRING, "name": STRING, "version": STRING, "publish": BOOLEAN,
    "annotations": array(ref("KeyValue")),
}
_ENTITY_REQUIRED = ("namespace", "name", "version", "publish", "annotations")
_UPDATED = {"updated": INTEGER}

def nullable(schema: Schema) -> Schema:
    """A PUT body's optional field: null means absent, as OpenWhisk reads it (Option)."""
    if "$ref" in schema:  # OpenAPI 3.0 ignores a $ref's siblings
        return {"allOf": [schema], "nullable": True}
    return {**schema, "nullable": True}


_PUT_COMMON = {
    "annotations": nullable(array(ref("KeyValuePut"))),
    "version": nullable({"type": "string", "pattern": SEMVER_PATTERN}),
    "publish": nullable(BOOLEAN),
}

_ACTION_LIMITS_PUT = obj(
    timeout={"type": "integer", "minimum": 100, "maximum": 300_000},
    memory={"type": "integer", "minimum": 128, "maximum": 512},
    logs={"type": "integer", "minimum": 0, "maximum": 10},
    concurrency={"type": "integer", "minimum": 1, "maximum": 1},
)

_ACTIVATION_RESPONSE = obj(
    ("status", "success"),
    status={"type": "string", "enum": [
        "success", "application error", "action developer error", "whisk internal error"]},
    success=BOOLEAN, result=ANY, size=INTEGER,
)

_ACTIVATION_HEAD = {
    "namespace": STRING, "name": STRING, "version": STRING, "publish": BOOLEAN,
    "annotations": array(ref("KeyValue")),
    "activationId": {"type": "string", "pattern": ACTIVATION_ID_PATTERN},
    "start": INTEGER, "end": INTEGER, "duration": INTEGER, "cause": STRING,
}

SCHEMAS: dict[str, Schema] = {
    "ErrorResponse": obj(
        ("error", "code"), error=STRING,
        code={"type": "string", "description": "The transaction id (also X-Request-ID)."},
    ),
    "KeyValue": obj(("key", "value"), key=STRING, value=ANY, init=BOOLEAN),
    "KeyValuePut": obj(("key",), key=STRING, value=ANY, init=BOOLEAN),
    "ApiInfo": obj(
        ("description", "api_version", "api_version_path", "build", "buildno",
         "swagger_paths"),
        description=STRING, api_version=STRING, api_version_path=STRING, build=STRING,
        buildno=STRING, swagger_paths={"type": "object", "additionalProperties": STRING},
    ),
    "RootInfo": obj(
        ("description", "api_paths", "limits", "runtimes"), description=STRING,
        api_paths=array(STRING), limits={"type": "object", "additionalProperties": INTEGER},
        runtimes={"type": "object", "additionalProperties": array(
            obj(("kind", "default"), kind=STRING, default=BOOLEAN))},
    ),
    "Invokers": {"type": "object", "additionalProperties": {
        "type": "string", "enum": ["up", "down", "unhealthy", "unresponsive"]}},
    "DashboardSnapshot": obj(
        ("namespace", "admin", "at", "invokers", "series", "latest", "feeds"),
        namespace=STRING, admin=BOOLEAN, at=INTEGER,
        invokers=array(obj(("id", "state"), id=STRING, state=STRING)),
        series=obj(("step_s", "t", "activations_per_s", "errors_per_s", "cold_starts",
                    "p50_ms", "p99_ms", "totals"),
                   step_s=INTEGER, t=array(INTEGER), activations_per_s=array(NUMBER),
                   errors_per_s=array(NUMBER), cold_starts=array(INTEGER),
                   p50_ms=array({"type": "number", "nullable": True}),
                   p99_ms=array({"type": "number", "nullable": True}),
                   totals=obj(("activations", "errors", "cold_starts"),
                              activations=INTEGER, errors=INTEGER, cold_starts=INTEGER)),
        latest=array(obj(("activationId", "namespace", "name", "start", "duration", "status",
                          "cold", "logs"),
                         activationId=STRING, namespace=STRING, name=STRING, start=INTEGER,
                         duration=INTEGER, status=STRING, cold=BOOLEAN, logs=array(STRING))),
        feeds=array(obj(("namespace", "trigger", "kind"), namespace=STRING, trigger=STRING,
                        kind=STRING)),
    ),
    "NamespaceLimits": {"type": "object", "additionalProperties": {
        "oneOf": [INTEGER, STRING]}},
    "ActivationId": obj(
        ("activationId",),
        activationId={"type": "string", "pattern": ACTIVATION_ID_PATTERN}),
    # -- actions
    "Exec": obj(
        ("kind", "binary"), kind=STRING, code=STRING, binary=BOOLEAN, main=STRING,
        components=array(STRING),
    ),
    "ActionLimits": obj(
        ("timeout", "memory", "logs", "concurrency"),
        timeout=INTEGER, memory=INTEGER, logs=INTEGER, concurrency=INTEGER,
    ),
    "Action": obj(
        (*_ENTITY_REQUIRED, "exec", "parameters", "limits", "updated"), **_ENTITY_HEAD,
        exec=ref("Exec"), parameters=array(ref("KeyValue")), limits=ref("ActionLimits"),
        **_UPDATED,
    ),
    "ActionSummary": obj(
        (*_ENTITY_REQUIRED, "exec", "limits", "updated"), **_ENTITY_HEAD,
        exec=obj(("binary",), binary=BOOLEAN), limits=ref("ActionLimits"), **_UPDATED,
    ),
    "ActionPut": obj(
        exec=obj(
            ("kind",), kind={"type": "string", "enum": [*supported_kinds(), SEQUENCE]},
            code=STRING, main=STRING, components=array(STRING),
        ),
        parameters=nullable(array(ref("KeyValuePut"))), limits=nullable(_ACTION_LIMITS_PUT),
        delAnnotations=nullable(array(STRING)), **_PUT_COMMON,
    ),
    "InvokeArguments": {
        "description": "Parameters for the action: an object (merged over the action's) or an "
                       "array (passed as it is).",
        "oneOf": [{"type": "object"}, {"type": "array"}],
    },
    # -- activations
    "Activation": obj(
        ("namespace", "name", "version", "subject", "activationId", "start", "publish",
         "response", "logs", "annotations"),
        **_ACTIVATION_HEAD, subject=STRING, response=_ACTIVATION_RESPONSE, logs=array(STRING),
    ),
    "ActivationSummary": obj(
        ("namespace", "name", "version", "publish", "annotations", "activationId", "start"),
        **_ACTIVATION_HEAD, statusCode=INTEGER,
    ),
    "ActivationResult": obj(
        ("success", "status"), result=ANY, success=BOOLEAN,
        status=_ACTIVATION_RESPONSE["properties"]["status"], size=INTEGER,
    ),
    "ActivationLogs": obj(("logs",), logs=array(STRING)),
    # -- triggers and rules
    "EntityRef": obj(("path", "name"), path=STRING, name=STRING),
    "Trigger": obj(
        (*_ENTITY_REQUIRED, "parameters", "limits", "updated"), **_ENTITY_HEAD,
        parameters=array(ref("KeyValue")), limits={"type": "object"}, **_UPDATED,
        rules={"type": "object", "additionalProperties": obj(
            ("action", "status"), action=ref("EntityRef"),
            status={"type": "string", "enum": ["active", "inactive"]})},
    ),
    "TriggerSummary": obj((*_ENTITY_REQUIRED, "updated"), **_ENTITY_HEAD, **_UPDATED),
    "TriggerPut": obj(parameters=nullable(array(ref("KeyValuePut"))),
                      limits=nullable({"type": "object"}), **_PUT_COMMON),
    "FirePayload": {"type": "object"},
    "Rule": obj(
        (*_ENTITY_REQUIRED, "status", "trigger", "action", "updated"), **_ENTITY_HEAD,
        status={"type": "string", "enum": ["active", "inactive"]},
        trigger=ref("EntityRef"), action=ref("EntityRef"), **_UPDATED,
    ),
    "RuleSummary": obj(
        (*_ENTITY_REQUIRED, "trigger", "action", "updated"), **_ENTITY_HEAD,
        trigger=ref("EntityRef"), action=ref("EntityRef"), **_UPDATED,
    ),
    "RulePut": obj(trigger={"oneOf": [STRING, ref("EntityRef")]},
                   action={"oneOf": [STRING, ref("EntityRef")]}, **_PUT_COMMON),
    "RuleState": obj(("status",), status={"type": "string", "enum": ["active", "inactive"]}),
    # API routes: what the npm client's routes.create and `wsk api create` send.
    "ApiRouteCreate": obj(("apidoc",), apidoc=obj(
        ("gatewayPath", "gatewayMethod", "action"),
        namespace=STRING, gatewayBasePath=STRING, gatewayPath=STRING, gatewayMethod=STRING,
        id=STRING, apiName=STRING,
        action=obj(("name",), name=STRING, namespace=STRING, backendMethod=STRING,
                   backendUrl=STRING, authkey=STRING))),
    "ApiRouteList": obj(("apis",), apis=array(obj(
        ("id", "key", "value"), id=STRING, key=STRING, value=obj(
            ("namespace", "gwApiUrl", "apidoc"), namespace=STRING, gwApiUrl=STRING,
            gwApiActivated=BOOLEAN, tenantId=STRING,
            apidoc=obj(("swagger", "basePath", "paths"), swagger=STRING, basePath=STRING,
                       info=ANY, paths={"type": "object"}))))),
    # -- packages
    "Binding": obj(namespace=STRING, name=STRING),
    "Package": obj(
        (*_ENTITY_REQUIRED, "binding", "parameters", "updated"), **_ENTITY_HEAD,
        binding=ref("Binding"), parameters=array(ref("KeyValue")), **_UPDATED,
    ),
    "PackageWithContents": obj(
        (*_ENTITY_REQUIRED, "binding", "parameters", "updated", "actions", "feeds"),
        **_ENTITY_HEAD, binding=ref("Binding"), parameters=array(ref("KeyValue")),
        **_UPDATED,
        actions=array(obj(("name", "version", "annotations"), name=STRING, version=STRING,
                          annotations=array(ref("KeyValue")))),
        feeds=array(obj(("name", "version", "annotations"), name=STRING, version=STRING,
                        annotations=array(ref("KeyValue")))),
    ),
    "PackageSummary": obj(
        (*_ENTITY_REQUIRED, "binding", "updated"), **_ENTITY_HEAD,
        binding={"oneOf": [{"type": "boolean", "enum": [False]}, ref("Binding")]}, **_UPDATED,
    ),
    "PackagePut": obj(parameters=nullable(array(ref("KeyValuePut"))),
                      binding=nullable(ref("Binding")), **_PUT_COMMON),
}
