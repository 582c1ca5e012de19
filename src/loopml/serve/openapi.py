"""The server's OpenAPI description (served at /openapi.json, fuzzed by the tests)."""

from __future__ import annotations

from typing import Any

from loopml import __version__

ERROR = {"description": "the caller's mistake", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}}  # fmt: skip


def spec(model: str, features: list[str]) -> dict[str, Any]:
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string", "example": "input"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "example": [1, len(features)]},
            "datatype": {"type": "string", "enum": ["FP64", "FP32", "INT64", "INT32", "FP16", "BOOL"]},
            "data": {"type": "array", "items": {"type": "number"}},
            "parameters": {"type": "object"},
        },
    }
    infer_request = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "inputs": {"type": "array", "items": tensor, "minItems": 1},
            "outputs": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
            "parameters": {"type": "object"},
        },
    }
    row = {"type": "array", "items": {"type": "number"}}
    invocation = {
        "type": "object",
        "properties": {
            "dataframe_split": {"type": "object", "properties": {
                "columns": {"type": "array", "items": {"type": "string", "enum": features or ["x"]}},
                "data": {"type": "array", "items": row}}},
            "dataframe_records": {"type": "array", "items": {"type": "object"}},
            "instances": {"type": "array", "items": row},
            "inputs": {"type": "array", "items": row},
        },
    }  # fmt: skip
    ok = {"description": "ok"}
    responses = {"200": ok, "400": ERROR, "404": ERROR, "413": ERROR, "415": ERROR, "503": ERROR, "504": ERROR}
    admin = {"200": ok, "400": ERROR, "401": ERROR, "403": ERROR, "409": ERROR}
    model_path = {"name": "model_name", "in": "path", "required": True, "schema": {"type": "string", "example": model}}
    version_path = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}

    def infer(params):
        return {"post": {"summary": "Open Inference Protocol infer", "parameters": params,
                         "requestBody": {"required": True, "content": {"application/json": {"schema": infer_request}}},
                         "responses": responses}}  # fmt: skip

    def get(summary, params=()):
        return {
            "get": {
                "summary": summary,
                "parameters": list(params),
                "responses": {"200": ok, "404": ERROR, "503": ERROR},
            }
        }

    return {
        "openapi": "3.0.3",
        "info": {"title": f"loopml serving {model}", "version": __version__},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/v2": get("server metadata"),
            "/v2/health/live": get("liveness"),
            "/v2/health/ready": get("readiness: the model is loaded and warmed"),
            "/v2/models/{model_name}": get("model metadata", [model_path]),
            "/v2/models/{model_name}/ready": get("model readiness", [model_path]),
            "/v2/models/{model_name}/versions/{version}": get("model version metadata", [model_path, version_path]),
            "/v2/models/{model_name}/infer": infer([model_path]),
            "/v2/models/{model_name}/versions/{version}/infer": infer([model_path, version_path]),
            "/invocations": {
                "post": {
                    "summary": "MLflow scoring protocol",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": invocation},
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    "responses": responses,
                }
            },  # fmt: skip
            "/ping": get("MLflow health"),
            "/health": get("MLflow health"),
            "/version": get("MLflow version"),
            "/metrics": get("Prometheus metrics"),
            "/feedback": {
                "post": {
                    "summary": "ground-truth labels for earlier requests",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"id": {"type": "string"}, "label": {}}}
                            }
                        },
                    },
                    "responses": {"200": ok, "400": ERROR, "409": ERROR},
                }
            },
            "/admin/reload": {
                "post": {
                    "summary": "load the alias's current version",
                    "security": [{"bearer": []}],
                    "responses": admin,
                }
            },  # fmt: skip
            "/admin/traffic": {
                "post": {
                    "summary": "set the canary share",
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"canary_percent": {"type": "number"}}}
                            }
                        },
                    },
                    "responses": admin,
                }
            },  # fmt: skip
        },
    }
