"""The OpenAPI 3.1 document of the CDS service, served at GET /openapi.json.

It describes what the views do (discovery, the three services, feedback, health) closely
enough for a fuzzer to check the live server against it: every status a client can cause,
and the JSON error body that comes with it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from cds_hooks.services import SERVICES
from runtime import __version__

_ERROR = {"$ref": "#/components/schemas/Error"}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


_ERRORS = {
    "400": _error_response("Not valid JSON, or not a valid CDS Hooks body; `details` per field."),
    "401": _error_response("JWT missing or not valid; `message` says why."),
    "404": _error_response("Unknown service id."),
    "405": _error_response("Method not allowed."),
    "413": _error_response("Body larger than `max_request_bytes`."),
    "415": _error_response("Unsupported media type."),
    "503": _error_response("The database could not store or check; retry."),
}


def _errors(*statuses: str) -> dict[str, Any]:
    return {status: _ERRORS[status] for status in statuses}


_CONTEXTS: dict[str, str] = {
    "patient-view": "#/components/schemas/PatientViewContext",
    "order-select": "#/components/schemas/OrderSelectContext",
    "order-sign": "#/components/schemas/OrderSignContext",
}


def _service_path(service_id: str, hook: str, title: str) -> dict[str, Any]:
    request_schema = {
        "allOf": [
            {"$ref": "#/components/schemas/HookRequest"},
            {
                "type": "object",
                "properties": {"hook": {"const": hook}, "context": {"$ref": _CONTEXTS[hook]}},
            },
        ]
    }
    return {
        "post": {
            "operationId": f"call-{service_id}",
            "summary": f"{title} ({hook} hook)",
            "tags": ["services"],
            "security": [{"cdsClientJwt": []}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": request_schema}},
            },
            "responses": {
                "200": {
                    "description": "The cards (possibly none).",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Cards"}}
                    },
                },
                **_errors("400", "401", "405"),
                "412": _error_response(
                    "Nothing can be judged: the patient, medication orders or conditions (or "
                    "the drugs orders name by reference) are missing or incomplete and cannot "
                    "be fetched from fhirServer; `missingPrefetch` lists the keys. Other "
                    "missing data withholds only the checks that read it (data-incomplete card)."
                ),
                **_errors("413", "415", "503"),
            },
        }
    }


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "minLength": 1},
            "message": {"type": "string", "minLength": 1},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "problem"],
                    "properties": {"field": {"type": "string"}, "problem": {"type": "string"}},
                },
            },
            "missingPrefetch": {"type": "array", "items": {"type": "string"}},
            "requestId": {"type": "string"},
        },
    },
    "Discovery": {
        "type": "object",
        "required": ["services"],
        "properties": {
            "services": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["hook", "id", "description"],
                    "properties": {
                        "hook": {"type": "string"},
                        "id": {"type": "string"},
                        "title": {"type": "string"},
                        "description": {"type": "string"},
                        "prefetch": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                        "usageRequirements": {"type": "string"},
                    },
                },
            }
        },
    },
    "FhirResource": {
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string", "minLength": 1}},
    },
    "HookRequest": {
        "type": "object",
        "required": ["hook", "hookInstance", "context"],
        "properties": {
            "hook": {"type": "string", "minLength": 1},
            "hookInstance": {"type": "string", "format": "uuid"},
            "fhirServer": {"type": "string", "format": "uri", "pattern": "^https?://[^/\\s]+"},
            "fhirAuthorization": {
                "type": "object",
                "required": ["access_token", "token_type"],
                "properties": {
                    "access_token": {"type": "string", "minLength": 1, "pattern": "\\S"},
                    "token_type": {"type": "string", "enum": ["Bearer", "bearer"]},
                    "expires_in": {"type": "integer"},
                    "scope": {"type": "string"},
                    "subject": {"type": "string"},
                },
            },
            "context": {"type": "object"},
            "prefetch": {
                "type": "object",
                "description": (
                    "Per key, the resource (or searchset Bundle, whose `entry` must be an array) "
                    "that answers the discovery template, or null when the client has no data. "
                    "An OperationOutcome, a searchset reporting an error, or a resource of "
                    "another type does not answer it: the key is fetched, or its checks withheld. "
                    "A key left out, or a searchset with a `next` link, is fetched (the rest "
                    "read), or its checks withheld."
                ),
                "additionalProperties": {
                    "anyOf": [{"$ref": "#/components/schemas/FhirResource"}, {"type": "null"}]
                },
            },
        },
    },
    "PatientViewContext": {
        "type": "object",
        "required": ["userId", "patientId"],
        "properties": {
            "userId": {"type": "string", "minLength": 1},
            "patientId": {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"},
            "encounterId": {"type": "string"},
        },
    },
    "DraftOrders": {
        "type": "object",
        "required": ["resourceType"],
        "properties": {
            "resourceType": {"const": "Bundle"},
            "entry": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["resource"],
                    "properties": {"resource": {"$ref": "#/components/schemas/FhirResource"}},
                },
            },
        },
    },
    "OrderSignContext": {
        "allOf": [
            {"$ref": "#/components/schemas/PatientViewContext"},
            {
                "type": "object",
                "required": ["draftOrders"],
                "properties": {"draftOrders": {"$ref": "#/components/schemas/DraftOrders"}},
            },
        ]
    },
    "OrderSelectContext": {
        "allOf": [
            {"$ref": "#/components/schemas/OrderSignContext"},
            {
                "type": "object",
                "required": ["selections"],
                "properties": {
                    "selections": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "string", "minLength": 1},
                    }
                },
            },
        ]
    },
    "Card": {
        "type": "object",
        "required": ["uuid", "summary", "indicator", "source"],
        "properties": {
            "uuid": {"type": "string"},
            "summary": {"type": "string", "maxLength": 140},
            "detail": {"type": "string"},
            "indicator": {"type": "string", "enum": ["info", "warning", "critical"]},
            "source": {
                "type": "object",
                "required": ["label"],
                "properties": {
                    "label": {"type": "string"},
                    "url": {"type": "string"},
                    "topic": {
                        "type": "object",
                        "properties": {
                            "system": {"type": "string"},
                            "code": {"type": "string"},
                            "display": {"type": "string"},
                        },
                    },
                },
            },
            "suggestions": {"type": "array", "items": {"type": "object"}},
            "selectionBehavior": {"type": "string", "enum": ["at-most-one", "any"]},
            "overrideReasons": {"type": "array", "items": {"type": "object"}},
            "links": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["label", "url", "type"],
                    "properties": {"type": {"type": "string", "enum": ["absolute", "smart"]}},
                },
            },
        },
    },
    "Cards": {
        "type": "object",
        "required": ["cards"],
        "properties": {"cards": {"type": "array", "items": {"$ref": "#/components/schemas/Card"}}},
    },
    "Feedback": {
        "type": "object",
        "required": ["feedback"],
        "properties": {
            "feedback": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1000,
                "items": {
                    "type": "object",
                    "required": ["card", "outcome", "outcomeTimestamp"],
                    "properties": {
                        "card": {"type": "string", "minLength": 1},
                        "outcome": {"type": "string", "enum": ["accepted", "overridden"]},
                        "outcomeTimestamp": {"type": "string", "format": "date-time"},
                        "acceptedSuggestions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["id"],
                                "properties": {"id": {"type": "string", "minLength": 1}},
                            },
                        },
                        "overrideReason": {"type": "object"},
                    },
                    "description": (
                        "Text longer than its column (card and suggestion ids 200, reason code "
                        "200, system and display 500, userComment 4000 characters) is stored "
                        "cut to fit and ending in `[truncated]`, never refused."
                    ),
                },
            }
        },
    },
    "FeedbackReceived": {
        "type": "object",
        "required": ["received"],
        "properties": {"received": {"type": "integer", "minimum": 0}},
    },
    "Health": {
        "type": "object",
        "required": ["status", "store", "jwtVerification", "version"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "store": {"type": "boolean"},
            "jwtVerification": {"type": "boolean"},
            "version": {"type": "string"},
        },
    },
}


@cache
def openapi_document() -> dict[str, Any]:
    """The document, built once (it depends on nothing but the code)."""
    paths: dict[str, Any] = {
        "/cds-services": {
            "get": {
                "operationId": "discovery",
                "summary": "CDS Hooks discovery: the services and their prefetch templates",
                "tags": ["discovery"],
                "security": [{}, {"cdsClientJwt": []}],
                "responses": {
                    "200": {
                        "description": "The discovery document.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Discovery"}
                            }
                        },
                    },
                    **_errors("401"),
                },
            }
        }
    }
    for service in SERVICES.values():
        paths[f"/cds-services/{service.id}"] = _service_path(
            service.id, service.hook, service.title
        )
    paths["/cds-services/{service_id}/feedback"] = {
        "post": {
            "operationId": "feedback",
            "summary": "CDS Hooks feedback on cards (accepted / overridden)",
            "tags": ["feedback"],
            "security": [{"cdsClientJwt": []}],
            "parameters": [
                {
                    "name": "service_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": sorted(SERVICES)},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Feedback"}}
                },
            },
            "responses": {
                "200": {
                    "description": "How many feedback items were stored.",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/FeedbackReceived"}
                        }
                    },
                },
                **_errors("400", "401", "404", "405", "413", "415", "503"),
            },
        }
    }
    health = {
        "description": "Liveness and the database.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
    }
    paths["/healthz"] = {
        "get": {
            "operationId": "health",
            "summary": "Health: 200 when the database answers, 503 when it does not",
            "tags": ["operations"],
            "security": [{}],
            "responses": {"200": health, "503": health},
        }
    }
    paths["/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "tags": ["operations"],
            "security": [{}],
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Anastrozole monitoring CDS service",
            "version": __version__,
            "description": "CDS Hooks 2.0 service (https://cds-hooks.hl7.org/2.0/). Every "
            "error is JSON: {error, message}. See docs/cds-hooks.md.",
        },
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "cdsClientJwt": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "CDS Hooks 2.0 client JWT: ES384/RS384, a trusted iss, "
                    "aud = the URL called, exp, iat, jti used once.",
                }
            },
        },
    }
