"""DRF's JSON parser with the engine's limits: the body's size (DATA_UPLOAD_MAX_MEMORY_SIZE, which
Django checks for forms but DRF's own parser does not) and `engine.jsonio`'s (depth, NaN, U+0000).
The one every API view uses: REST_FRAMEWORK's DEFAULT_PARSER_CLASSES, and views that list parsers."""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework import parsers

from engine import jsonio
from engine.errors import ValidationFailed


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.")
        if encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
            try:
                raw = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise ValidationFailed(f"The request body is not {encoding} text ({exc}).",
                                       code="invalid_json") from None
        return jsonio.loads(raw, what="The request body")
