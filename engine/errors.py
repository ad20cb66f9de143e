"""One domain error type, mapped to HTTP in one place (`api_exception_handler`).

Messages say what was wrong with the input and how to fix it; `details` carries
per-field or per-file reasons.
"""
from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404


class EngineError(Exception):
    status = 400
    default_code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, details=None):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details


class ValidationFailed(EngineError):
    status = 400
    default_code = "invalid"


class NotFound(EngineError):
    status = 404
    default_code = "not_found"


class Forbidden(EngineError):
    status = 403
    default_code = "forbidden"


class Conflict(EngineError):
    status = 409
    default_code = "conflict"


class RateLimited(EngineError):
    status = 429
    default_code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


def error_body(code: str, message: str, details=None) -> dict:
    body = {"error": {"code": code, "message": message}}
    if details is not None:
        body["error"]["details"] = details
    return body


def api_exception_handler(exc, context):
    """DRF exception handler: every error, ours or DRF's, as {"error": {code, message, details}}."""
    # Imported here: DRF's views import the authentication classes, which raise our errors.
    from rest_framework import exceptions as drf_exceptions
    from rest_framework.response import Response
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, EngineError):
        response = Response(error_body(exc.code, exc.message, exc.details), status=exc.status)
        if isinstance(exc, RateLimited):
            response["Retry-After"] = str(exc.retry_after_s)
        return response
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf_exceptions.ValidationError):
        response.data = error_body("invalid", "The request has invalid fields; see details.", response.data)
    elif isinstance(exc, drf_exceptions.APIException):
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        response.data = error_body(exc.get_codes() if isinstance(exc.get_codes(), str) else "error", detail)
    return response
