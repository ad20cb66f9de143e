"""Stored files: content-addressed writes, and serving them (a presigned URL on S3, a streamed
response on local storage).

Every stored file is named by its content, `<folder>/<sha[:2]>/<sha>.<ext>`: the same bytes
always get the same name, so a retry or a concurrent writer stores nothing twice, an orphan left
by a failed transaction is harmless, and a name never changes what it points at.
"""
import hashlib
import re
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponseRedirect

from engine.errors import NotFound


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of bytes: the content address of a stored file (and the dedupe key of images)."""
    return hashlib.sha256(data).hexdigest()


def store_content_addressed(*, folder: str, extension: str, data: bytes | File, sha256: str | None = None) -> str:
    """Save `data` under folder/<sha[:2]>/<sha>.<ext> unless it is there already; return the name.

    `data` is bytes, or a Django File to stream from (large files: snapshot shards). `sha256`
    is the content's hex SHA-256; computed here for bytes when not given, a File's caller gives it.
    """
    if sha256 is None:
        sha256 = sha256_bytes(data)
    name = f"{folder}/{sha256[:2]}/{sha256}.{extension}"
    if not default_storage.exists(name):
        saved = default_storage.save(name, data if isinstance(data, File) else ContentFile(data))
        if saved != name:  # a concurrent writer won the race; keep one copy
            default_storage.delete(saved)
    return name


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


def _folders() -> list[tuple[str, bool]]:
    """(folder, keep the part below it) for each server folder a message may name, longest first."""
    media = Path(settings.MEDIA_ROOT)
    temp = Path(tempfile.gettempdir())
    found = {str(media): True, str(media.resolve()): True, str(temp): False, str(temp.resolve()): False,
             str(settings.VAR_DIR): True, str(settings.BASE_DIR): True}
    return sorted(found.items(), key=lambda f: len(f[0]), reverse=True)


def without_server_paths(text: str) -> str:
    """`text` with the server's folders taken out, for messages users see (a failed task's reason,
    an API error): a stored file is named as in storage ('checkpoints/15/<sha>.pt'), a file under
    the data or code folders by its path below them, a temporary file by its name alone."""
    for folder, keep_below in _folders():
        if folder in ("", "/", "."):
            continue
        # the folder, then either a path below it or the end of the path (not /tmpfoo for /tmp)
        pattern = re.escape(folder.rstrip("/")) + r"(?:/([^\s'\"]*)|(?=[\s'\":,;)\]]|$))"
        if keep_below:
            text = re.sub(pattern, lambda m: m.group(1) or "(a server folder)", text)
        else:
            text = re.sub(pattern, lambda m: (m.group(1) or "").rsplit("/", 1)[-1] or "(a temporary folder)", text)
    return text
