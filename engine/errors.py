"""One domain error type, mapped to HTTP in one place (`api_exception_handler`).

Messages say what was wrong with the input and how to fix it; `details` carries
per-field or per-file reasons.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpResponse, JsonResponse
from botocore.exceptions import ConnectionError as StorageConnectionError
from botocore.exceptions import HTTPClientError as StorageHTTPClientError
from kombu.exceptions import OperationalError as BrokerUnavailable
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout

log = logging.getLogger(__name__)
#: Seconds a client is asked to wait when the database, the broker or the cache is unreachable for a moment.
DATABASE_RETRY_AFTER_S = 5

# The services a request may meet down for a moment (restarting, failing over, refusing
# connections), by the errors their clients raise: the answer is a 503 with Retry-After, "send the
# same request again", not a 500 "our bug". A judgement's idempotency key makes a resent one
# count once; a resent generation job takes over the first one's items.
UNAVAILABLE_SERVICES: tuple[tuple[tuple[type[BaseException], ...], str], ...] = (
    ((OperationalError, InterfaceError), "The database"),  # a deadlock or serialization failure too
    ((BrokerUnavailable,), "The task queue (Redis)"),  # a task could not be sent
    ((RedisConnectionError, RedisTimeout), "The cache (Redis)"),
    ((StorageConnectionError, StorageHTTPClientError), "The file storage (S3)"),
)


def unavailable_service(exc: BaseException) -> str | None:
    """Which service `exc` says is unreachable, or None when it is another error."""
    for types, service in UNAVAILABLE_SERVICES:
        if isinstance(exc, types):
            return service
    return None


def unavailable_body(service: str) -> dict:
    return error_body("unavailable", f"{service} is unavailable for a moment; send the same request again "
                                     f"in {DATABASE_RETRY_AFTER_S} seconds.")


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
        return _as_json(response, context)
    service = unavailable_service(exc)
    if service is not None:  # see UNAVAILABLE_SERVICES
        request = context.get("request")
        log.warning("%s %s: %s unavailable: %s", getattr(request, "method", "?"),
                    getattr(request, "path", "?"), service, exc)
        response = Response(unavailable_body(service), status=503)
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
        return _as_json(response, context)
    if isinstance(exc, SuspiciousOperation):  # a body too large, too many fields: the request's fault
        return _as_json(Response(error_body(*_bad_request(exc)), status=400), context)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # Django's handler500 answers (`server_error`)
    if isinstance(exc, drf_exceptions.ValidationError):
        response.data = error_body("invalid", "The request has invalid fields; see details.", response.data)
    elif isinstance(exc, drf_exceptions.APIException):
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        response.data = error_body(exc.get_codes() if isinstance(exc.get_codes(), str) else "error", detail)
    return _as_json(response, context)


def _as_json(response, context):
    """Errors are JSON whatever the view renders otherwise (?format=csv, the browsable API's HTML)."""
    from rest_framework.renderers import JSONRenderer

    request = context.get("request")
    if request is not None:
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = JSONRenderer.media_type
    return response


class NulInRequest(SuspiciousOperation):
    """The URL holds a NUL character (engine.middleware.RefuseNulMiddleware)."""


def _bad_request(exc) -> tuple[str, str]:
    if isinstance(exc, NulInRequest):
        return "invalid", "The URL has a NUL character (%00), which no name or value here can hold; remove it."
    if isinstance(exc, RequestDataTooBig):
        return "too_large", (f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes "
                             "(DATA_UPLOAD_MAX_MEMORY_SIZE); send less, or large files in a zip import.")
    if isinstance(exc, TooManyFieldsSent):
        return "too_many_fields", (f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:,} fields "
                                   "(DATA_UPLOAD_MAX_NUMBER_FIELDS).")
    return "bad_request", "The request is malformed and was refused."


# ------------------------------------------------------------------ Django's error views
# Errors raised outside DRF's views (an unknown URL, an uncaught exception, a body too large
# for Django, a failed CSRF check) answer with the same JSON under /api/ and Django's pages
# elsewhere. Wired in engine/urls.py (handler400/403/404/500) and CSRF_FAILURE_VIEW.
API_PREFIX = "/api/"


def _for_api(request) -> bool:
    return request.path.startswith(API_PREFIX)


def _json_error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status)


def bad_request(request, exception=None):
    if _for_api(request):
        return _json_error(400, *_bad_request(exception))
    from django.views import defaults

    return defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    if _for_api(request):
        return _json_error(403, "forbidden", "You may not do this.")
    from django.views import defaults

    return defaults.permission_denied(request, exception)


def page_not_found(request, exception=None):
    if _for_api(request):
        return _json_error(404, "not_found", f"No API endpoint at {request.path}; the API is listed at "
                                             "/api/v1/docs/.")
    from django.views import defaults

    return defaults.page_not_found(request, exception)


def server_error(request):
    if _for_api(request):
        return _json_error(500, "server_error", "The server failed on this request and logged it; "
                                                "try again later, or report it with the time of the request.")
    from django.views import defaults

    return defaults.server_error(request)


def service_unavailable(request, service: str):
    """503 with Retry-After for a request that met the database, the broker or the cache down
    outside DRF's views (engine.middleware.ServiceUnavailableMiddleware): JSON under /api/, text elsewhere."""
    if _for_api(request):
        response = JsonResponse(unavailable_body(service), status=503)
    else:
        response = HttpResponse(unavailable_body(service)["error"]["message"], status=503,
                                content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    return response


def csrf_failure(request, reason: str = ""):
    if _for_api(request):
        return _json_error(403, "csrf_failed", f"CSRF check failed ({reason}). A browser session sends the "
                                               "X-CSRFToken header; scripts use a token: Authorization: Token <key>.")
    from django.views.csrf import csrf_failure as django_csrf_failure

    return django_csrf_failure(request, reason)
