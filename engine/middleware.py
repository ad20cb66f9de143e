"""Checks on the request itself, before any view."""
from __future__ import annotations

import logging

from django.conf import settings
from django.http import Http404

from engine.errors import (API_PREFIX, NulInRequest, bad_request, page_not_found, server_error, service_unavailable,
                           unavailable_service)

log = logging.getLogger("django.request")


class RefuseNulMiddleware:
    """A NUL character in the path or the query string (%00) is refused with a 400 (JSON with the
    error shape under /api/): PostgreSQL's text cannot hold it, so any view filtering by the value
    (?search=, ?label=, ?annotator=, a username in the path) failed with a 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or "%00" in query or "\x00" in query:
            return bad_request(request, NulInRequest("NUL character in the URL"))
        return self.get_response(request)


class ApiErrorsAsJsonInDebugMiddleware:
    """With DEBUG on (`make run`), Django answers an unknown URL and an uncaught exception with its
    technical HTML pages and never calls the error views of engine.errors; under /api/ this
    answers them with the JSON error shape all the same (the exception is still logged, with its
    traceback, as Django would). With DEBUG off it does nothing: the error views answer."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (settings.DEBUG and response.status_code == 404 and request.path.startswith(API_PREFIX)
                and response.get("Content-Type", "").startswith("text/html")):
            return page_not_found(request)
        return response

    def process_exception(self, request, exception):
        if not settings.DEBUG or not request.path.startswith(API_PREFIX) or isinstance(exception, Http404):
            return None
        log.error("Internal Server Error: %s", request.path, exc_info=exception,
                  extra={"status_code": 500, "request": request})
        return server_error(request)


class ServiceUnavailableMiddleware:
    """A view outside DRF (pages, the dashboard, Django's own) that meets the database, the broker
    or the cache down answers 503 with Retry-After (engine.errors.UNAVAILABLE_SERVICES), as DRF's
    views do through the exception handler, instead of a 500. Last in MIDDLEWARE: it sees a view's
    exception first."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        service = unavailable_service(exception)
        if service is None:
            return None
        log.warning("%s %s: %s unavailable: %s", request.method, request.path, service, exception)
        return service_unavailable(request, service)
