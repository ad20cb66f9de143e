"""The OpenAPI schema's house rules: what drf-spectacular cannot see in thin APIViews.

- `TokenScheme`: `engine.auth.ApiTokenAuthentication` as a security scheme, so that every
  operation is declared as token OR session (drf-spectacular lists one alternative per
  authenticator).
- `paginated_list(item)`: the `extend_schema` of a list view that answers through
  `engine.apis.paginate` (`{count, next, previous, results}` and the page parameters).
- `ERROR`: the one error shape, `{"error": {code, message, details}}`, as a component;
  `error_responses_hook` (a postprocessing hook, SPECTACULAR_SETTINGS) adds the error
  statuses each operation can answer with, so that no view has to list them.
"""
from __future__ import annotations

import functools

from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers

from engine.pagination import PageNumberPagination


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's, naming a paginated list's operation `..._list` as it does for a ViewSet's."""

    def get_operation_id(self) -> str:
        operation_id = super().get_operation_id()
        if self.method == "GET" and getattr(self.get_response_serializers(), "is_page", False):
            operation_id = operation_id.removesuffix("_retrieve") + "_list"
        return operation_id


class TokenScheme(OpenApiAuthenticationExtension):
    target_class = "engine.auth.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        # `Token <key>` and `Bearer <key>` are both accepted; bearer is what generated clients send.
        return {"type": "http", "scheme": "bearer",
                "description": "A personal API token (`POST /api/v1/auth/token/`), sent as "
                               "`Authorization: Bearer <key>` or `Authorization: Token <key>`."}


# ------------------------------------------------------------------ errors
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string",
                     "description": "Stable, machine-readable: invalid, not_found, forbidden, conflict, ..."},
            "message": {"type": "string", "description": "What was wrong with the request and how to fix it."},
            "details": {"description": "Per-field or per-file reasons, when there are any."},
        },
    }},
}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_RETRY_AFTER = {"description": "Seconds to wait before sending the same request again.",
                "schema": {"type": "integer", "minimum": 1}}

# A status a view answers with beyond the ones the hook adds (429, ...): `responses={429: ERROR}`;
# the hook gives it the error shape.
ERROR = OpenApiResponse(description="An error, in the API's one error shape.")


def _has_query(path, method, op) -> bool:
    return any(p["in"] == "query" for p in op.get("parameters", []))


def _secured(path, method, op) -> bool:
    return any(alternative for alternative in op.get("security", []))


# Status -> (description, where the hook adds it when the view did not document it).
ERROR_STATUSES = {
    "400": ("The request is invalid; `error.details` says which fields.",
            lambda path, method, op: "requestBody" in op or _has_query(path, method, op)),
    "401": ("No credentials, or a revoked token.", _secured),
    "403": ("The caller's role in the project does not allow this.", _secured),
    "404": ("No such object for this caller, or no such page.",
            lambda path, method, op: "{" in path or any(p["name"] == "page" for p in op.get("parameters", []))),
    "415": ("The body's media type is not one the operation reads (or the body cannot be parsed as it).",
            lambda path, method, op: "requestBody" in op),
    "409": ("The object's state does not allow this now.",
            lambda path, method, op: method in ("post", "put", "patch", "delete")),
    # engine.errors.UNAVAILABLE_SERVICES: any operation may meet one of them restarting.
    "503": ("The database, the task queue, the cache or the file storage is unavailable for a moment "
            "(restarting); send the same request again after the `Retry-After` header's seconds.",
            lambda path, method, op: True),
}


def error_responses_hook(result, generator, request, public):
    """drf-spectacular postprocessing hook: the error shape as the component `Error`, and on
    every operation the error statuses it can answer with, in that shape."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        for method, op in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = op.setdefault("responses", {})
            for code, (description, applies) in ERROR_STATUSES.items():
                if code not in responses and applies(path, method, op):
                    responses[code] = {"description": description}
            if "503" in responses:
                responses["503"].setdefault("headers", {"Retry-After": _RETRY_AFTER})
            for code, response in responses.items():
                if code >= "400" and not response.get("content"):
                    response["content"] = {"application/json": {"schema": _ERROR_REF}}
    return result


def request_media_types_hook(result, generator, request, public):
    """drf-spectacular postprocessing hook: one media type per request body, the one a client
    should send: multipart/form-data where the body carries a file, else application/json.

    DRF's default parsers also read forms, and drf-spectacular lists each parser's media type
    with the same schema; a client generator then offers (or sends) all three at once. The API
    still reads the others; the schema names the one to use."""
    schemas = result.get("components", {}).get("schemas", {})
    for operations in result.get("paths", {}).values():
        for method, op in operations.items():
            content = op.get("requestBody", {}).get("content") if isinstance(op, dict) else None
            if not content or len(content) == 1:
                continue
            schema = next(iter(content.values()))["schema"]
            wanted = "multipart/form-data" if _has_file(schema, schemas) else "application/json"
            if wanted in content:
                op["requestBody"]["content"] = {wanted: content[wanted]}
    return result


def _has_file(schema: dict, schemas: dict, depth: int = 0) -> bool:
    if depth > 8:
        return False
    if "$ref" in schema:
        return _has_file(schemas.get(schema["$ref"].rsplit("/", 1)[1], {}), schemas, depth + 1)
    if schema.get("format") == "binary":
        return True
    children = [*schema.get("properties", {}).values(), *([schema["items"]] if "items" in schema else [])]
    return any(_has_file(child, schemas, depth + 1) for child in children)


# ------------------------------------------------------------------ lists
PAGE_PARAMETERS = [
    OpenApiParameter("page", int, description="1-based page number; past the last page is a 404."),
    OpenApiParameter("page_size", int, description=f"Results per page, at most {PageNumberPagination.max_page_size}."),
]


@functools.cache
def paginated(item: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The serializer of a page of `item`s, as `engine.apis.paginate` answers it."""
    name = f"Paginated{item.__name__}List"
    return type(name, (serializers.Serializer,), {
        "count": serializers.IntegerField(min_value=0, help_text="Results across all pages."),
        "next": serializers.URLField(allow_null=True, help_text="The next page, or null on the last."),
        "previous": serializers.URLField(allow_null=True, help_text="The previous page, or null on the first."),
        "results": item(many=True),
        "is_page": True,
        "__module__": item.__module__,
    })


def paginated_list(item: type[serializers.Serializer], *, parameters=(), **kwargs):
    """`extend_schema` for a list view answering through `engine.apis.paginate`."""
    return extend_schema(responses=paginated(item), parameters=[*PAGE_PARAMETERS, *parameters], **kwargs)


def binary(*media_types: str, description: str = "The file."):
    """`responses` of a view that answers with a stored file (a redirect to it on S3)."""
    return {(200, media_type): OpenApiResponse(OpenApiTypes.BINARY, description=description)
            for media_type in media_types} | {302: OpenApiResponse(description="Redirect to the file (S3 storage).")}
