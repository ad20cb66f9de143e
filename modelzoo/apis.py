"""Thin DRF views of the model zoo: checkpoint registry, project mix, candidate files
(generation jobs are a round's step: engine/rounds/apis.py). Each parses input, fetches through a selector (permissions) and calls a service."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from engine.apis import paginate, parse
from engine.errors import NotFound, ValidationFailed
from engine.files import stored_file_response
from engine.jsonio import loads as json_loads
from engine.parsers import JSONParser
from engine.schema import ERROR, binary, paginated_list
from engine.models import Role
from engine.selectors import project_get_for_user
from modelzoo import selectors, services
from modelzoo.models import Checkpoint

MIX_ROLES = [Role.LEAD, Role.TRAINER]
MAX_ID = 2**63 - 1  # primary keys are PostgreSQL bigints: a larger id is a 400, not a database error
MAX_SHARE = 1e6  # shares are relative; a bound keeps their sum finite


class CheckpointOut(serializers.ModelSerializer):
    class Meta:
        model = Checkpoint
        fields = ["id", "name", "version", "backend", "role", "parent", "sha256", "config", "recipe", "evaluation",
                  "lineage", "public", "created_at"]


class CheckpointIn(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    version = serializers.CharField(max_length=50)
    backend = serializers.CharField(max_length=50, default="builtin")
    project = serializers.SlugField(required=False, help_text=(
        "The project it is for (you train or lead there): it is visible to that project. Required but for "
        "site admins."))
    parent = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_ID)
    file = serializers.FileField(required=False)
    config = serializers.CharField(required=False, default="{}", help_text="JSON object")
    recipe = serializers.CharField(required=False, default="{}", help_text="JSON object")
    evaluation = serializers.CharField(required=False, default="{}", help_text="JSON object")
    lineage = serializers.CharField(required=False, default="{}", help_text="JSON object")


def _json_object(raw, name: str) -> dict:
    if isinstance(raw, dict):
        return raw
    value = json_loads(raw or "{}", what=f"'{name}'")
    if not isinstance(value, dict):
        raise ValidationFailed(f"'{name}' must be a JSON object.")
    return value


class CheckpointListCreateApi(APIView):
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @paginated_list(CheckpointOut)
    def get(self, request):
        return paginate(self, request, selectors.checkpoint_list_for_user(request.user), CheckpointOut)

    @extend_schema(request=CheckpointIn, responses={201: CheckpointOut, 200: CheckpointOut, 404: ERROR})
    def post(self, request):
        checkpoints = selectors.checkpoint_list_for_user(request.user)  # role check
        data = parse(CheckpointIn, request.data)
        project = selectors.checkpoint_registration_project(request.user, data.get("project"))
        parent = None
        if data.get("parent"):
            parent = checkpoints.filter(pk=data["parent"]).first()
            if parent is None:
                raise ValidationFailed(f"No parent checkpoint {data['parent']}.")
        upload = data.get("file")
        checkpoint, created = services.checkpoint_register(
            name=data["name"], version=data["version"], backend=data["backend"], parent=parent,
            data=upload.read() if upload else None,
            config=_json_object(data["config"], "config"), recipe=_json_object(data["recipe"], "recipe"),
            evaluation=_json_object(data["evaluation"], "evaluation"),
            lineage=_json_object(data["lineage"], "lineage"), project=project, created_by=request.user,
        )
        return Response(CheckpointOut(checkpoint).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class CheckpointDetailApi(APIView):
    @extend_schema(responses=CheckpointOut)
    def get(self, request, checkpoint_id: int):
        return Response(CheckpointOut(selectors.checkpoint_get_for_user(request.user, checkpoint_id)).data)


class CheckpointShareApi(APIView):
    """Share a checkpoint you see with a project you lead: it may then see it and put it in its mix."""

    class CheckpointShareIn(serializers.Serializer):
        project = serializers.SlugField(help_text="Slug of a project you lead.")

    class CheckpointShareOut(serializers.Serializer):
        checkpoint = serializers.IntegerField()
        project = serializers.SlugField()
        created_at = serializers.DateTimeField()

    @extend_schema(responses=CheckpointShareOut(many=True))
    def get(self, request, checkpoint_id: int):
        """The projects it is shared with, among those you are a member of."""
        checkpoint = selectors.checkpoint_get_for_user(request.user, checkpoint_id)
        shares = selectors.checkpoint_shares_for_user(request.user, checkpoint)
        return Response(self.CheckpointShareOut(
            [{"checkpoint": checkpoint.pk, "project": s.project.slug, "created_at": s.created_at} for s in shares],
            many=True).data)

    @extend_schema(request=CheckpointShareIn, responses={201: CheckpointShareOut, 200: CheckpointShareOut})
    def post(self, request, checkpoint_id: int):
        checkpoint = selectors.checkpoint_get_for_user(request.user, checkpoint_id)  # 404 unless visible
        data = parse(self.CheckpointShareIn, request.data)
        project = project_get_for_user(request.user, data["project"], roles=[Role.LEAD])
        share, created = services.checkpoint_share(checkpoint=checkpoint, project=project, shared_by=request.user)
        body = self.CheckpointShareOut({"checkpoint": checkpoint.pk, "project": project.slug,
                                        "created_at": share.created_at})
        return Response(body.data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class MixEntry(serializers.Serializer):
    checkpoint = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    share = serializers.FloatField(default=1.0, min_value=0.0, max_value=MAX_SHARE)  # finite: DRF refuses nan, inf

    def validate_share(self, value: float) -> float:
        if value <= 0:
            raise serializers.ValidationError("A share must be positive; leave the checkpoint out instead.")
        return value


class MixIn(serializers.Serializer):
    mix = MixEntry(many=True, allow_empty=False)


class MixOut(serializers.Serializer):
    class MixOutEntry(serializers.Serializer):
        checkpoint = serializers.IntegerField()
        name = serializers.CharField()
        backend = serializers.CharField()
        share = serializers.FloatField()

    mix = MixOutEntry(many=True)


def _mix_out(project) -> dict:
    return {"mix": [{"checkpoint": pc.checkpoint_id, "name": str(pc.checkpoint), "backend": pc.checkpoint.backend,
                     "share": pc.share} for pc in selectors.project_mix(project)]}


class ProjectMixApi(APIView):
    """The checkpoints a project generates with now, each with its share of the N seeds."""

    @extend_schema(responses=MixOut)
    def get(self, request, slug: str):
        return Response(_mix_out(project_get_for_user(request.user, slug)))

    @extend_schema(request=MixIn, responses=MixOut)
    def put(self, request, slug: str):
        project = project_get_for_user(request.user, slug, roles=MIX_ROLES)
        data = parse(MixIn, request.data)
        services.project_mix_set(project=project, mix=selectors.mix_resolve(project, data["mix"]))
        return Response(_mix_out(project))


_FILES = {
    "glb": ("glb", "model/gltf-binary", "mesh"),
    "glb-compact": ("glb_compact", "model/gltf-binary", "mesh"),
    "splat": ("splat_compact", "application/octet-stream", "splat"),
    "splat-ply": ("splat", "application/octet-stream", "splat"),
    "preview": ("preview", "image/png", "preview"),
}


class CandidateFileApi(APIView):
    """A candidate's files, for members of its project: the mesh (GLB, compact GLB), the Gaussian
    splat (`splat`: the browser's SPZ; `splat-ply`: the full 3DGS PLY) and the preview PNG."""

    @extend_schema(
        parameters=[OpenApiParameter("variant", str, OpenApiParameter.PATH, enum=list(_FILES))],
        responses=binary("model/gltf-binary", "application/octet-stream", "image/png"),
    )
    def get(self, request, candidate_id: int, variant: str):
        if variant not in _FILES:
            raise NotFound(f"No '{variant}' for a candidate; use {', '.join(_FILES)}.")
        candidate = selectors.candidate_get_for_user(request.user, candidate_id)
        field, content_type, what = _FILES[variant]
        name = getattr(candidate, field).name
        if not name and what != "preview":
            other = "a Gaussian splat only (GET .../splat)" if what == "mesh" else "a mesh only (GET .../glb)"
            raise NotFound(f"Candidate {candidate_id} has no {what}: its backend made {other}.",
                           code=f"no_{what}")
        return stored_file_response(name, content_type=content_type)
