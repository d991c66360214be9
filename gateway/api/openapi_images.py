"""The OpenAI-compatible images operations in the gateway's OpenAPI document, with their OpenAI-shaped errors."""

from __future__ import annotations

from gateway.api.openapi_parts import BYTES, TENANT, Json, json_body, json_response, operation, problems, ref

_ERROR_STATUSES = {
    400: "invalid_request_error: a field is missing or invalid (`param` names it)",
    401: "invalid_api_key: no valid gateway key",
    402: "insufficient_quota: the prepaid balance or the spending budget does not cover the estimated cost",
    403: "permission_denied: the key lacks the predict scope",
    404: "No model serves the operation, or the request's `model` is not one the key may use",
    429: "rate_limit_exceeded: a rate or concurrency limit (see `Retry-After` and the `ratelimit-*` headers)",
    500: "server_error: the gateway failed",
    502: "server_error: the model's prediction failed",
    503: "server_error: the upstream provider or the store is unavailable",
    504: "server_error: the prediction did not finish within 60 seconds (it is cancelled)",
}
_COMMON_FIELDS: Json = {
    "prompt": {"type": "string", "description": "The prediction's `prompt`"},
    "n": {"type": ["integer", "null"], "minimum": 1, "maximum": 10, "description": "The prediction's `num_outputs`"},
    "size": {"type": ["string", "null"], "description": "`WIDTHxHEIGHT` (the prediction's `width` and `height`) or `auto`"},
    "response_format": {"type": ["string", "null"], "enum": ["url", "b64_json", None]},
    "model": {"type": ["string", "null"], "description": "A catalog model (`owner/name`) the key may use"},
    "user": {"type": "string", "description": "Accepted and ignored"},
}
SCHEMAS: Json = {
    "ImageGenerationRequest": {
        "type": "object",
        "required": ["prompt"],
        "additionalProperties": False,
        "properties": _COMMON_FIELDS,
    },
    "ImageEditRequest": {
        "type": "object",
        "required": ["image", "mask", "prompt"],
        "additionalProperties": False,
        "properties": {
            "image": {**BYTES, "description": "The prediction's `image`"},
            "mask": {**BYTES, "description": "The prediction's `mask`"},
            **_COMMON_FIELDS,
            "n": {"type": "integer", "minimum": 1, "maximum": 10, "description": "The prediction's `num_outputs`"},
            "size": {"type": "string", "description": "`WIDTHxHEIGHT` (the prediction's `width` and `height`) or `auto`"},
            "response_format": {"type": "string", "enum": ["url", "b64_json"]},
            "model": {"type": "string", "description": "A catalog model (`owner/name`) the key may use"},
        },
    },
    "ImagesResponse": {
        "type": "object",
        "required": ["created", "data"],
        "properties": {
            "created": {"type": "integer", "description": "Unix seconds: when the prediction was created"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "url": {"type": "string", "format": "uri", "description": "A signed link to the output file"},
                        "b64_json": {"type": "string", "description": "The output file's bytes, base64-encoded"},
                    },
                },
            },
        },
    },
    "OpenAIError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
}


def _responses() -> Json:
    errors = {str(status): json_response(description, ref("OpenAIError")) for status, description in _ERROR_STATUSES.items()}
    return {"200": json_response("The images, one per output", ref("ImagesResponse")), **errors, **problems(413)}


def tenant_paths() -> Json:
    """The images operations relative to an API prefix."""
    multipart = {"required": True, "content": {"multipart/form-data": {"schema": ref("ImageEditRequest")}}}
    return {
        "/images/generations": {
            "post": operation(
                "images.generations.create",
                "OpenAI-compatible: create images with the operator's generations model (waits up to 60 s)",
                TENANT,
                _responses(),
                requestBody=json_body(ref("ImageGenerationRequest")),
            )
        },
        "/images/edits": {
            "post": operation(
                "images.edits.create",
                "OpenAI-compatible: edit an image inside a mask with the operator's edits model (waits up to 60 s)",
                TENANT,
                _responses(),
                requestBody=multipart,
            )
        },
    }
