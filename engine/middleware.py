"""Checks on the request itself, before any view."""
from __future__ import annotations

from engine.errors import NulInRequest, bad_request


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
