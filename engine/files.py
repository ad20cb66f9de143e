"""Serving stored files: a presigned URL on S3, a streamed response on local storage."""
from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponseRedirect

from engine.errors import NotFound


def storage_is_s3() -> bool:
    return bool(settings.AWS_STORAGE_BUCKET_NAME)


def stored_file_response(name: str, *, content_type: str, download_name: str | None = None):
    if not name:
        raise NotFound("This file does not exist.")
    if storage_is_s3():
        return HttpResponseRedirect(default_storage.url(name))
    try:
        handle = default_storage.open(name, "rb")
    except FileNotFoundError:
        raise NotFound("The stored file is missing.") from None
    response = FileResponse(handle, content_type=content_type, as_attachment=bool(download_name),
                            filename=download_name or "")
    response["Cache-Control"] = "private, max-age=86400"  # names are content hashes: never change
    return response
