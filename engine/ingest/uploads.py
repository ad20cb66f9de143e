"""Uploads: files sent in chunks (each a short request), staged on disk, then imported by a job.

The browser's import (and any API client) declares the files first (`upload_create`: paths and
sizes, checked against the limits before a byte is sent), then sends each file in chunks that
name their offset (`Content-Range: bytes start-end/size`). A chunk is taken only at exactly the
offset received so far: a retried or out-of-order chunk gets 409 with the expected offset, from
which the client resumes, also after a reload or a dropped connection. So a 2 GB zip is a few
hundred requests of up to INGEST_UPLOAD_CHUNK_BYTES, none holding a web worker for long.

`upload_complete` runs the checks that need no unpacking (a zip at all, its central directory's
sizes, paths and links, a format it can tell from the names), then starts an IngestJob in state
PREPARING; the worker unpacks and reads the files (`jobs.ingest_job_prepare_run`) and ingests
them in batches. Files are staged in settings.INGEST_UPLOAD_DIR/<upload id>/files/, which the
workers must see (one machine, or a shared volume), and removed when the job is done.

Loose files (no images/ + masks/ folders, no JSON) are laid out as a folder import: a PNG named
after a photo plus `_<label>` (`cup.jpg` + `cup_mask.png`, `cup_handle.png`) is a mask of that
photo; `<stem>.npy` or `<stem>_depth.png` its depth map.
"""
from __future__ import annotations

import os
import re
import shutil
from datetime import timedelta
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from engine.errors import Conflict, EngineError, NotFound, ValidationFailed
from engine.ingest.readers import (
    FORMATS,
    IMAGE_SUFFIXES,
    SourceError,
    detect_format,
    extract_zip,
    zip_open_checked,
)
from engine.models import IngestJob, Project, Upload, UploadFile

UPLOAD_SUFFIXES = {".zip", ".json", ".npy", *IMAGE_SUFFIXES}


class TooLarge(EngineError):
    status = 413
    default_code = "too_large"


def upload_dir(upload_id: int) -> Path:
    return Path(settings.INGEST_UPLOAD_DIR) / str(upload_id)


def _staged(upload_file: UploadFile) -> Path:
    return upload_dir(upload_file.upload_id) / "files" / upload_file.path


def _clean_path(raw) -> str:
    """A file's path inside the upload: relative, '/'-separated, nothing that climbs out."""
    if not isinstance(raw, str) or not raw.strip() or "\x00" in raw or len(raw) > 1000:
        raise ValidationFailed(f"{raw!r} is not a valid file path.", code="bad_path")
    path = PurePosixPath(raw.replace("\\", "/"))
    if path.is_absolute() or any(part in ("", ".", "..") for part in path.parts):
        raise ValidationFailed(f"'{raw}': a file's path is relative and has no '..'.", code="bad_path")
    return str(path)


def upload_create(*, project: Project, user, files: list[dict], fmt: str = "auto") -> Upload:
    """Declare an upload's files ({"path", "size"} each); refuses what could never be imported
    before a byte is sent: too many files, too many bytes, a type ingest does not read."""
    if fmt != "auto" and fmt not in FORMATS:
        raise ValidationFailed(f"Unknown format '{fmt}'; use auto, {', '.join(FORMATS)}.", code="bad_format")
    if not files:
        raise ValidationFailed("An upload has at least one file.")
    if len(files) > settings.INGEST_MAX_UPLOAD_FILES:
        raise TooLarge(f"{len(files):,} files in one upload; at most {settings.INGEST_MAX_UPLOAD_FILES:,}: "
                       "zip them, or import them in several uploads.")
    paths = [_clean_path(f["path"]) for f in files]
    if len(set(paths)) != len(paths):
        raise ValidationFailed("The same path appears twice in the upload.", code="bad_path")
    unreadable = sorted({p for p in paths if PurePosixPath(p).suffix.lower() not in UPLOAD_SUFFIXES})
    if unreadable:
        raise ValidationFailed(
            f"Ingest cannot read {', '.join(unreadable[:5])}{' …' if len(unreadable) > 5 else ''}: upload photos "
            "(.jpg, .png, .webp), PNG masks, COCO or SA-1B .json, depth maps (.npy, .png) or one .zip.",
            code="unknown_file_type")
    zips = [p for p in paths if p.lower().endswith(".zip")]
    if zips and len(paths) > 1:
        raise ValidationFailed("A .zip is uploaded alone; put the other files in it, or upload them without it.",
                               code="zip_not_alone")
    total = sum(f["size"] for f in files)
    if total > settings.INGEST_MAX_UPLOAD_BYTES:
        raise TooLarge(f"The upload is {total:,} bytes, above the limit of {settings.INGEST_MAX_UPLOAD_BYTES:,} "
                       "(INGEST_MAX_UPLOAD_BYTES).")
    if zips and total > settings.INGEST_MAX_ZIP_BYTES:
        raise TooLarge(f"The zip is {total:,} bytes, above the limit of {settings.INGEST_MAX_ZIP_BYTES:,} "
                       "(INGEST_MAX_ZIP_BYTES); split it.")
    with transaction.atomic():
        upload = Upload.objects.create(project=project, created_by=user, format=fmt)
        UploadFile.objects.bulk_create(UploadFile(upload=upload, index=i, path=p, size=f["size"])
                                       for i, (p, f) in enumerate(zip(paths, files)))
    shutil.rmtree(upload_dir(upload.pk), ignore_errors=True)  # SQLite reuses the ids of deleted rows
    (upload_dir(upload.pk) / "files").mkdir(parents=True)
    return upload


def upload_get(*, project: Project, upload_id: int) -> Upload:
    """An upload of `project` (the caller fetched the project through its selector, as a lead)."""
    upload = Upload.objects.filter(project=project, pk=upload_id).first()
    if upload is None:
        raise NotFound(f"No upload {upload_id} in project '{project.slug}'.")
    return upload


_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


def content_range_parse(header: str | None, length: int) -> tuple[int, int, int]:
    """(start, end inclusive, total) of a `Content-Range: bytes start-end/total` header."""
    if length == 0 and not header:
        return 0, -1, 0
    match = _RANGE.match((header or "").strip())
    if not match:
        raise ValidationFailed("A chunk names its place: 'Content-Range: bytes <first>-<last>/<file size>'.",
                               code="bad_range")
    start, end, total = (int(g) for g in match.groups())
    if end < start or end - start + 1 != length:
        raise ValidationFailed(f"Content-Range says {end - start + 1} bytes, the body has {length}.",
                               code="bad_range")
    return start, end, total


def upload_chunk_write(*, upload: Upload, index: int, start: int, total: int, data: bytes) -> UploadFile:
    """Write one chunk of file `index` at `start`, which must be exactly the bytes received so far
    (409 `offset_mismatch` with `expected_offset` otherwise). The offset moves only after the
    bytes are on disk: a chunk cut off mid-way is sent again from the same offset."""
    if len(data) > settings.INGEST_UPLOAD_CHUNK_BYTES:
        raise TooLarge(f"A chunk is at most {settings.INGEST_UPLOAD_CHUNK_BYTES:,} bytes; this one is {len(data):,}.")
    with transaction.atomic():
        upload_file = UploadFile.objects.select_for_update().select_related("upload").filter(
            upload=upload, index=index).first()
        if upload_file is None:
            raise NotFound(f"Upload {upload.pk} has no file {index}.")
        if upload_file.upload.state != Upload.State.RECEIVING:
            raise Conflict(f"Upload {upload.pk} is {upload_file.upload.state}; it takes no more chunks.",
                           code="upload_closed")
        if total != upload_file.size:
            raise ValidationFailed(f"'{upload_file.path}' was declared with {upload_file.size:,} bytes, the chunk "
                                   f"says {total:,}.", code="bad_range")
        if start + len(data) > upload_file.size:
            raise ValidationFailed(f"The chunk ends past the end of '{upload_file.path}' ({upload_file.size:,} "
                                   "bytes).", code="bad_range")
        if start != upload_file.received:
            raise Conflict(f"'{upload_file.path}': the next chunk starts at byte {upload_file.received:,}, not "
                           f"{start:,}; resume from there.", code="offset_mismatch",
                           details={"expected_offset": upload_file.received})
        target = _staged(upload_file)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, data, start)
            os.ftruncate(fd, start + len(data))  # whatever a cut-off earlier try left past it goes
        finally:
            os.close(fd)
        upload_file.received = start + len(data)
        upload_file.save(update_fields=["received"])
    return upload_file


def _upload_discard(upload: Upload) -> None:
    Upload.objects.filter(pk=upload.pk).update(state=Upload.State.CANCELLED)
    shutil.rmtree(upload_dir(upload.pk), ignore_errors=True)


def upload_cancel(*, upload: Upload) -> None:
    if upload.state == Upload.State.COMPLETE:
        raise Conflict(f"Upload {upload.pk} is already being imported (job {upload.job.pk}).", code="upload_closed")
    _upload_discard(upload)


def upload_complete(*, upload: Upload, user) -> IngestJob:
    """All bytes are in: check what can be checked without unpacking and start the import job
    (202 for the API). Idempotent: completing again answers the same job. An upload that fails
    these checks is discarded (its files removed): nothing of it is imported."""
    with transaction.atomic():
        upload = Upload.objects.select_for_update().get(pk=upload.pk)
        if upload.state == Upload.State.COMPLETE:
            return upload.job
        if upload.state == Upload.State.CANCELLED:
            raise Conflict(f"Upload {upload.pk} was cancelled; start a new one.", code="upload_closed")
        files = list(upload.files.all())
        missing = [f for f in files if f.received != f.size]
        if missing:
            f = missing[0]
            raise Conflict(f"'{f.path}' has {f.received:,} of its {f.size:,} bytes"
                           + (f" ({len(missing)} files are incomplete)" if len(missing) > 1 else "")
                           + "; send the rest first.", code="upload_incomplete",
                           details={"incomplete": [{"index": f.index, "path": f.path, "received": f.received,
                                                    "size": f.size} for f in missing[:100]]})
        try:
            _check_without_unpacking(upload, files)
        except SourceError as exc:
            refusal = ValidationFailed(str(exc) + " Nothing was imported; the upload is discarded.", code="bad_import")
        else:
            refusal = None
    if refusal is not None:
        _upload_discard(upload)
        raise refusal
    with transaction.atomic():
        upload = Upload.objects.select_for_update().get(pk=upload.pk)
        if upload.state == Upload.State.COMPLETE:
            return upload.job
        upload.state = Upload.State.COMPLETE
        upload.save(update_fields=["state"])
        name = files[0].path if len(files) == 1 else f"{len(files)} files"
        job = IngestJob.objects.create(project=upload.project, upload=upload, source_name=name[:500],
                                       created_by=user, state=IngestJob.State.PREPARING,
                                       path=str(upload_dir(upload.pk)))
        transaction.on_commit(lambda: _prepare_enqueue(job.pk))
    return job


def _prepare_enqueue(job_id: int) -> None:
    from engine.ingest.tasks import ingest_prepare  # tasks import jobs, which import this module

    ingest_prepare.delay(job_id)


def _guess_format(names: list[str]) -> str | None:
    """The format the names say, without reading a file: None when they say none."""
    parts = [PurePosixPath(n).parts for n in names]
    for depth in (0, 1):  # at the top, or inside one folder (a zipped folder)
        tops = {p[depth] for p in parts if len(p) > depth + 1}
        if {"images", "masks"} <= tops:
            return "folder"
    if any(n.lower().endswith(".json") for n in names):
        return "json"  # COCO or SA-1B: the worker reads the document to tell
    if any(PurePosixPath(n).suffix.lower() in IMAGE_SUFFIXES for n in names):
        return "loose"
    return None


def _check_without_unpacking(upload: Upload, files: list[UploadFile]) -> None:
    if len(files) == 1 and files[0].path.lower().endswith(".zip"):
        with zip_open_checked(_staged(files[0]), upload_dir(upload.pk) / "source") as archive:
            names = [m.filename for m in archive.infolist() if not m.is_dir()]
        if _guess_format(names) in (None, "loose"):
            raise SourceError("Cannot tell the zip's format: expected images/ + masks/ folders, a COCO JSON or "
                              "SA-1B JSON files.")
        return
    if _guess_format([f.path for f in files]) is None:
        raise SourceError("Nothing to import: no photo and no JSON among the files.")


def upload_source(upload: Upload) -> tuple[str, Path]:
    """(format, path) of an upload for `read_source`, on the worker: the zip unpacked (again, if a
    first try was cut off), or the loose files laid out as a folder import. SourceError when the
    files hold nothing it can read."""
    if upload is None:
        raise SourceError("The job's upload is gone.")
    root = upload_dir(upload.pk)
    files = list(upload.files.all())
    if len(files) == 1 and files[0].path.lower().endswith(".zip"):
        source = root / "source"
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir(parents=True)
        extract_zip(_staged(files[0]), source)
        return _detect(source, upload.format)
    staged = root / "files"
    if upload.format == "auto" and _guess_format([f.path for f in files]) == "loose":
        return "folder", _loose_laid_out(staged, root / "source")
    return _detect(staged, upload.format)


def _detect(root: Path, forced: str) -> tuple[str, Path]:
    """The format the files hold (detect_format), or the one the uploader named over it."""
    fmt, path = detect_format(root)
    if forced != "auto" and forced != fmt:
        fmt, path = forced, (root if forced != "coco" else path)
    return fmt, path


def _loose_laid_out(staged: Path, layout: Path) -> Path:
    """Loose photos, PNG masks and depth maps as a folder import (images/, masks/<stem>/, depth/),
    by hard links (no copies). A PNG named `<photo stem>_<label>.png` is a mask of that photo;
    `<stem>.npy` / `<stem>_depth.png` its depth; a PNG that names no photo is a photo."""
    shutil.rmtree(layout, ignore_errors=True)
    files = [p for p in staged.rglob("*") if p.is_file()]
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    all_stems = {p.stem for p in images}

    def prefixes(stem: str):  # the stem's proper prefixes that end at a separator, longest first
        for i in range(len(stem) - 1, 0, -1):
            if stem[i] in "_-.":
                yield stem[:i], stem[i + 1:]

    photos = [p for p in images if p.suffix.lower() != ".png" or not any(s in all_stems for s, _ in prefixes(p.stem))]
    by_stem = {p.stem: p for p in photos}

    def owner(stem: str) -> tuple[str, str] | None:  # (photo stem, label) for the longest photo stem prefix
        return next(((s, rest) for s, rest in prefixes(stem) if s in by_stem), None)

    def link(src: Path, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)

    (layout / "images").mkdir(parents=True)
    (layout / "masks").mkdir()
    for p in photos:
        link(p, layout / "images" / p.name)
    for p in files:
        if p in photos:
            continue
        if p.suffix.lower() == ".npy" and p.stem.removesuffix("_depth") in by_stem:
            link(p, layout / "depth" / f"{p.stem.removesuffix('_depth')}.npy")
            continue
        found = owner(p.stem) if p.suffix.lower() == ".png" else None
        if found is None:
            continue  # a .json or .npy that names no photo: nothing a folder import reads
        stem, label = found
        if label == "depth":
            link(p, layout / "depth" / f"{stem}.png")
        else:  # cup_2.png: an unnamed object; the folder reader drops the _2
            link(p, layout / "masks" / stem / f"{f'object_{label}' if label.isdigit() else label}.png")
    return layout


def without_upload_paths(upload_id: int, message: str) -> str:
    """A reader's message about an upload's files, naming them as the user did: no server folder."""
    for sub, whole in (("source", "the zip"), ("files", "the upload")):
        base = upload_dir(upload_id) / sub
        for folder in {str(base.resolve()), str(base)}:
            message = message.replace(folder + "/", "").replace(folder, whole)
    return message


def upload_files_remove(*, job_id: int) -> None:
    """Remove a finished job's staged upload (its report stays in the database)."""
    upload_id = IngestJob.objects.filter(pk=job_id).values_list("upload_id", flat=True).first()
    if upload_id:
        shutil.rmtree(upload_dir(upload_id), ignore_errors=True)


def uploads_expire(*, older_than_hours: int | None = None) -> int:
    """Cancel uploads still receiving after INGEST_UPLOAD_EXPIRE_HOURS (a tab closed for good) and
    remove their staged files; the beat task `ingest.uploads_expire` runs it hourly."""
    hours = settings.INGEST_UPLOAD_EXPIRE_HOURS if older_than_hours is None else older_than_hours
    stale = Upload.objects.filter(state=Upload.State.RECEIVING,
                                  created_at__lt=timezone.now() - timedelta(hours=hours))
    count = 0
    for upload in stale.iterator():
        _upload_discard(upload)
        count += 1
    return count


def upload_from_file(*, project: Project, user, name: str, file, fmt: str = "auto") -> IngestJob:
    """The API's one-request zip import (POST .../imports/): the posted file staged as an upload of
    one file, then completed as any other upload."""
    size = getattr(file, "size", None)
    upload = upload_create(project=project, user=user, files=[{"path": _zip_name(name), "size": size or 0}], fmt=fmt)
    upload_file = upload.files.get()
    target = _staged(upload_file)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        for chunk in file.chunks():
            out.write(chunk)
    UploadFile.objects.filter(pk=upload_file.pk).update(received=upload_file.size)
    return upload_complete(upload=upload, user=user)


def _zip_name(name: str) -> str:
    base = PurePosixPath((name or "upload.zip").replace("\\", "/")).name or "upload.zip"
    return base if base.lower().endswith(".zip") else f"{base}.zip"
