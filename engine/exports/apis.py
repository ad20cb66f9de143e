"""Thin DRF views of exports: define and list snapshots, fetch one, rebuild, download files."""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from engine.apis import paginate, parse
from engine.bounds import BigIntegerField
from engine.exports import selectors, services
from engine.exports.definition import FORMATS, KINDS
from engine.exports.models import Snapshot
from engine.files import stored_file_response
from engine.schema import binary, paginated_list

_CONTENT_TYPES = {"parquet": "application/vnd.apache.parquet", "tar": "application/x-tar",
                  "jsonl": "application/jsonl", "md": "text/markdown; charset=utf-8"}


class SnapshotOut(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Snapshot
        fields = ["id", "project", "kind", "format", "definition", "definition_sha256", "since", "state",
                  "progress", "manifest", "error", "created_at", "built_at"]

    def get_progress(self, snapshot) -> dict:
        return selectors.snapshot_progress(snapshot)


class SnapshotIn(serializers.Serializer):
    kind = serializers.ChoiceField(choices=KINDS)
    format = serializers.ChoiceField(choices=FORMATS, default="parquet")
    filters = serializers.DictField(required=False, default=dict)
    pairing = serializers.CharField(required=False, allow_null=True, default=None)
    keep_ties = serializers.BooleanField(required=False, allow_null=True, default=None)
    since = BigIntegerField(required=False, allow_null=True, default=None)
    shard_bytes = BigIntegerField(required=False, allow_null=True, default=None)
    license = serializers.CharField(required=False, allow_null=True, default=None, max_length=100)
    assets = serializers.CharField(required=False, allow_null=True, default=None, max_length=20,
                                   help_text="embedded | referenced (default: referenced for DPO, embedded for SFT)")


class SnapshotListCreateApi(APIView):
    @paginated_list(SnapshotOut)
    def get(self, request, slug: str):
        project = selectors.project_for_exports(request.user, slug)
        return paginate(self, request, selectors.snapshot_list(project=project), SnapshotOut)

    @extend_schema(request=SnapshotIn, responses={201: SnapshotOut, 200: SnapshotOut})
    def post(self, request, slug: str):
        project = selectors.project_for_exports(request.user, slug)
        data = parse(SnapshotIn, request.data)
        snapshot, created = services.snapshot_define(project=project, created_by=request.user, **data)
        if created:
            services.snapshot_build_enqueue(snapshot=snapshot)
        return Response(SnapshotOut(snapshot).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class SnapshotDetailApi(APIView):
    @extend_schema(responses=SnapshotOut)
    def get(self, request, snapshot_id: int):
        return Response(SnapshotOut(selectors.snapshot_get_for_user(request.user, snapshot_id)).data)


class SnapshotChangesApi(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT, description=(
        "What changed since the project's previous built snapshot of the same kind: `previous` (null when none), "
        "`settings` (definition entries that differ, watermark included), `counts` (before, after, delta) and "
        "`files` (added, removed, changed by sha256, and how many are unchanged)."))
    def get(self, request, snapshot_id: int):
        return Response(selectors.snapshot_changes(selectors.snapshot_get_for_user(request.user, snapshot_id)))


class SnapshotBuildApi(APIView):
    @extend_schema(request=None, responses={202: SnapshotOut})
    def post(self, request, snapshot_id: int):
        snapshot = services.snapshot_rebuild_request(
            snapshot=selectors.snapshot_get_for_user(request.user, snapshot_id))
        return Response(SnapshotOut(snapshot).data, status=status.HTTP_202_ACCEPTED)


class SnapshotFileApi(APIView):
    """A file of a built snapshot by its dataset path (README.md, data/train-000000.parquet, ...):
    a presigned URL on S3, a streamed response on local storage."""

    @extend_schema(responses=binary(*dict.fromkeys([*_CONTENT_TYPES.values(), "application/octet-stream"])))
    def get(self, request, snapshot_id: int, path: str):
        entry = selectors.snapshot_file(selectors.snapshot_get_for_user(request.user, snapshot_id), path)
        ext = path.rsplit(".", 1)[-1]
        return stored_file_response(entry["storage_name"], content_type=_CONTENT_TYPES.get(ext, "application/octet-stream"),
                                    download_name=path.rsplit("/", 1)[-1])
