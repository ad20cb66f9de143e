"""The import API: chunked uploads, import jobs with their progress and per-file report.

    POST   /projects/{slug}/uploads/                         declare files -> 201 upload
    PUT    /projects/{slug}/uploads/{id}/files/{index}       one chunk (Content-Range) -> 200 file's offset
    GET    /projects/{slug}/uploads/{id}/                    where each file stands (to resume)
    POST   /projects/{slug}/uploads/{id}/complete/           -> 202 the import job
    DELETE /projects/{slug}/uploads/{id}/                    cancel, staged files removed
    GET    /projects/{slug}/imports/                         the jobs, newest first
    POST   /projects/{slug}/imports/                         a zip in one request -> 202 the job
    GET    /projects/{slug}/imports/{id}/                    progress and the report's counts
    GET    /projects/{slug}/imports/{id}/entries/            the report: one row per file
    POST   /projects/{slug}/imports/{id}/retry/              send a failed job's failed batches again

Every view needs the project's lead role (the selector checks it); the services are
`engine.ingest.uploads` and `engine.ingest.jobs`.
"""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from engine import selectors
from engine.errors import NotFound, ValidationFailed
from engine.ingest import jobs, uploads
from engine.models import IngestEntry, IngestJob, Role, Upload
from engine.pagination import PageNumberPagination
from engine.schema import paginated_list

LEAD = [Role.LEAD]


def _parse(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class OctetStreamParser(BaseParser):
    """A chunk's bytes as they came (Django has checked the body's size: DATA_UPLOAD_MAX_MEMORY_SIZE)."""

    media_type = "application/octet-stream"

    def parse(self, stream, media_type=None, parser_context=None) -> bytes:
        return stream.read() if stream is not None else b""


# ------------------------------------------------------------------ serializers
class UploadFileOut(serializers.Serializer):
    index = serializers.IntegerField()
    path = serializers.CharField()
    size = serializers.IntegerField()
    received = serializers.IntegerField(help_text="Bytes received: the offset of the next chunk.")


class UploadOut(serializers.ModelSerializer):
    files = UploadFileOut(many=True, source="files.all")
    job = serializers.SerializerMethodField()
    chunk_bytes = serializers.SerializerMethodField()

    class Meta:
        model = Upload
        fields = ["id", "state", "format", "created_at", "files", "job", "chunk_bytes"]

    def get_job(self, upload) -> int | None:
        job = getattr(upload, "job", None) if upload.state == Upload.State.COMPLETE else None
        return job.pk if job else None

    def get_chunk_bytes(self, upload) -> int:
        from django.conf import settings

        return settings.INGEST_UPLOAD_CHUNK_BYTES


class ProgressOut(serializers.Serializer):
    total = serializers.IntegerField(help_text="Entries in the source (0 while preparing).")
    done = serializers.IntegerField(help_text="Entries ingested so far.")
    images_imported = serializers.IntegerField()
    images_duplicate = serializers.IntegerField()
    masks_imported = serializers.IntegerField()
    masks_duplicate = serializers.IntegerField()
    batches_failed = serializers.IntegerField()


class ReportCountsOut(serializers.Serializer):
    added = serializers.IntegerField()
    duplicate = serializers.IntegerField()
    refused = serializers.IntegerField()


class ImportJobOut(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None)
    progress = serializers.SerializerMethodField()
    report = serializers.SerializerMethodField()

    class Meta:
        model = IngestJob
        fields = ["id", "state", "format", "source_name", "created_by", "created_at", "finished_at", "error",
                  "progress", "report"]

    def _figures(self, job) -> dict:
        known = self.context.get("figures")  # a list: every job's figures in two queries
        if known is None or job.pk not in known:
            known = jobs.ingest_jobs_figures(job_ids=[job.pk])
        return known[job.pk]

    def get_progress(self, job) -> ProgressOut:
        return {"total": job.total, **self._figures(job)["progress"]}

    def get_report(self, job) -> ReportCountsOut:
        return self._figures(job)["report"]


class ImportEntryOut(serializers.ModelSerializer):
    class Meta:
        model = IngestEntry
        fields = ["id", "name", "outcome", "reason", "image", "masks_added", "masks_duplicate"]


# ------------------------------------------------------------------ uploads
class UploadCreateApi(APIView):
    class FileIn(serializers.Serializer):
        path = serializers.CharField(max_length=1000, trim_whitespace=False,
                                     help_text="The file's path in the upload: a name, or folder/name for a folder.")
        size = serializers.IntegerField(min_value=0, max_value=2**62, help_text="Bytes.")

    class CreateIn(serializers.Serializer):
        files = serializers.ListField(child=serializers.DictField(), allow_empty=False, required=True)
        format = serializers.ChoiceField(choices=["auto", "folder", "coco", "sa1b"], default="auto")

    @extend_schema(request=inline_serializer("UploadCreate", {
        "files": FileIn(many=True, help_text="One .zip, or photos, PNG masks, COCO/SA-1B JSON and depth maps."),
        "format": serializers.ChoiceField(choices=["auto", "folder", "coco", "sa1b"], default="auto")}),
        responses={201: UploadOut})
    def post(self, request, slug: str):
        project = selectors.project_get_for_user(request.user, slug, roles=LEAD)
        data = _parse(self.CreateIn, request.data)
        files = []
        for i, raw in enumerate(data["files"]):
            checked = self.FileIn(data=raw)
            if not checked.is_valid():
                raise ValidationFailed(f"files[{i}] is not valid; see details.", details={f"files[{i}]": checked.errors})
            files.append(checked.validated_data)
        upload = uploads.upload_create(project=project, user=request.user, files=files, fmt=data["format"])
        return Response(UploadOut(upload).data, status=status.HTTP_201_CREATED)


class UploadDetailApi(APIView):
    @extend_schema(responses=UploadOut)
    def get(self, request, slug: str, upload_id: int):
        project = selectors.project_get_for_user(request.user, slug, roles=LEAD)
        return Response(UploadOut(uploads.upload_get(project=project, upload_id=upload_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, slug: str, upload_id: int):
        project = selectors.project_get_for_user(request.user, slug, roles=LEAD)
        uploads.upload_cancel(upload=uploads.upload_get(project=project, upload_id=upload_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class UploadChunkApi(APIView):
    """One chunk of one file: the body is the bytes, `Content-Range: bytes first-last/size` their
    place. Only the next chunk is taken: any other offset gets 409 `offset_mismatch` with
    details.expected_offset, the offset to resume from."""

    parser_classes = [OctetStreamParser]

    @extend_schema(
        request={"application/octet-stream": OpenApiTypes.BINARY}, responses=UploadFileOut,
        parameters=[OpenApiParameter("Content-Range", str, OpenApiParameter.HEADER, required=False,
                                     description="bytes <first>-<last>/<file size>; may be left out only for an "
                                                 "empty file")])
    def put(self, request, slug: str, upload_id: int, index: int):
        project = selectors.project_get_for_user(request.user, slug, roles=LEAD)
        upload = uploads.upload_get(project=project, upload_id=upload_id)
        data = request.data if isinstance(request.data, bytes) else b""
        start, _end, total = uploads.content_range_parse(request.headers.get("Content-Range"), len(data))
        upload_file = uploads.upload_chunk_write(upload=upload, index=index, start=start, total=total, data=data)
        return Response(UploadFileOut(upload_file).data)


class UploadCompleteApi(APIView):
    @extend_schema(request=None, responses={202: ImportJobOut})
    def post(self, request, slug: str, upload_id: int):
        project = selectors.project_get_for_user(request.user, slug, roles=LEAD)
        job = uploads.upload_complete(upload=uploads.upload_get(project=project, upload_id=upload_id),
                                      user=request.user)
        return Response(ImportJobOut(job).data, status=status.HTTP_202_ACCEPTED)


# ------------------------------------------------------------------ import jobs
def _job_get(project, job_id: int) -> IngestJob:
    job = IngestJob.objects.filter(project=project, pk=job_id).select_related("created_by").first()
    if job is None:
        raise NotFound(f"No import {job_id} in project '{project.slug}'.")
    return job


class ImportListCreateApi(APIView):
    """The project's imports; POST a zip (folder, COCO or SA-1B layout) to import it on the
    workers: 202 with the job, whose progress and report GET .../imports/{id}/ shows."""

    parser_classes = [MultiPartParser]

    class ImportIn(serializers.Serializer):
        file = serializers.FileField()
        format = serializers.ChoiceField(choices=["auto", "folder", "coco", "sa1b"], default="auto")

    @paginated_list(ImportJobOut)
    def get(self, request, slug: str):
        project = selectors.project_get_for_user(request.user, slug, roles=LEAD)
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(
            IngestJob.objects.filter(project=project).select_related("created_by").order_by("-id"), request, view=self)
        figures = jobs.ingest_jobs_figures(job_ids=[j.pk for j in page])
        return paginator.get_paginated_response(ImportJobOut(page, many=True, context={"figures": figures}).data)

    @extend_schema(request=ImportIn, responses={202: ImportJobOut})
    def post(self, request, slug: str):
        project = selectors.project_get_for_user(request.user, slug, roles=LEAD)
        data = _parse(self.ImportIn, request.data)
        job = uploads.upload_from_file(project=project, user=request.user, name=data["file"].name,
                                       file=data["file"], fmt=data["format"])
        return Response(ImportJobOut(job).data, status=status.HTTP_202_ACCEPTED)


class ImportDetailApi(APIView):
    @extend_schema(responses=ImportJobOut)
    def get(self, request, slug: str, job_id: int):
        project = selectors.project_get_for_user(request.user, slug, roles=LEAD)
        return Response(ImportJobOut(_job_get(project, job_id)).data)


class ImportEntriesApi(APIView):
    class FiltersIn(serializers.Serializer):
        outcome = serializers.ChoiceField(choices=IngestEntry.Outcome.choices, required=False)

    @paginated_list(ImportEntryOut, parameters=[FiltersIn])
    def get(self, request, slug: str, job_id: int):
        project = selectors.project_get_for_user(request.user, slug, roles=LEAD)
        job = _job_get(project, job_id)
        params = _parse(self.FiltersIn, request.query_params)
        entries = IngestEntry.objects.filter(job=job).order_by("id")
        if outcome := params.get("outcome"):
            entries = entries.filter(outcome=outcome)
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(entries, request, view=self)
        return paginator.get_paginated_response(ImportEntryOut(page, many=True).data)


class ImportRetryApi(APIView):
    @extend_schema(request=None, responses={202: ImportJobOut})
    def post(self, request, slug: str, job_id: int):
        project = selectors.project_get_for_user(request.user, slug, roles=LEAD)
        job = jobs.ingest_job_retry(job=_job_get(project, job_id))
        return Response(ImportJobOut(job).data, status=status.HTTP_202_ACCEPTED)
