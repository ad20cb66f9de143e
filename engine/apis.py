"""Thin DRF views of the core domain: projects, members, tokens, images, masks. (Imports: engine.ingest.apis.)

Each view parses input, fetches through a selector (which checks membership and role)
and calls one service. Errors are `engine.errors` types, rendered in one handler.
"""
from __future__ import annotations

import io

import numpy as np
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from PIL import Image as PILImage
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from engine import jsonio
from engine import masks as mask_codec
from engine import selectors, services
from engine.auth import login_authenticate
from engine.bounds import int_from_text
from engine.errors import NotFound, ValidationFailed
from engine.files import stored_file_response
from engine.ingest.services import ingest_item
from engine.ingest.validation import IngestRejected, ItemInput, MaskInput
from engine.pagination import PageNumberPagination
from engine.schema import ERROR, binary, paginated_list
from engine.models import ApiToken, Image, Membership, ObjectMask, Project, Role

LEAD = [Role.LEAD]


def parse(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def paginate(view: APIView, request, queryset, serializer_class):
    paginator = PageNumberPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


# ------------------------------------------------------------------ auth
class TokenOut(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "revoked_at"]


class TokenCreatedOut(TokenOut):
    key = serializers.CharField(help_text="The token itself: shown once, store it now.")

    class Meta(TokenOut.Meta):
        fields = [*TokenOut.Meta.fields, "key"]


class TokenListCreateApi(APIView):
    class CreateIn(serializers.Serializer):
        name = serializers.CharField(max_length=100)

    @extend_schema(responses=TokenOut(many=True))
    def get(self, request):
        return Response(TokenOut(request.user.api_tokens.all(), many=True).data)

    @extend_schema(request=CreateIn, responses={201: TokenCreatedOut})
    def post(self, request):
        data = parse(self.CreateIn, request.data)
        token, key = services.token_create(user=request.user, name=data["name"])
        return Response(TokenOut(token).data | {"key": key}, status=status.HTTP_201_CREATED)


class TokenRevokeApi(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request, token_id: int):
        services.token_revoke(user=request.user, token_id=token_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenLoginApi(APIView):
    """Exchange a username and password for a new API token (for the CLI); throttled on failures."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    class LoginIn(serializers.Serializer):
        username = serializers.CharField()
        password = serializers.CharField()
        name = serializers.CharField(max_length=100, default="cli")

    @extend_schema(request=LoginIn, responses={201: TokenCreatedOut, 429: ERROR})
    def post(self, request):
        data = parse(self.LoginIn, request.data)
        user = login_authenticate(request=request, username=data["username"], password=data["password"])
        if user is None:
            raise ValidationFailed("Wrong username or password.", code="bad_credentials")
        token, key = services.token_create(user=user, name=data["name"])
        return Response(TokenOut(token).data | {"key": key}, status=status.HTTP_201_CREATED)


# ------------------------------------------------------------------ projects
class ProjectOut(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["id", "name", "slug", "description", *services.PROJECT_SETTINGS[2:], "created_at"]


class ProjectIn(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["name", "slug", "description", *services.PROJECT_SETTINGS[2:]]
        extra_kwargs = {"slug": {"required": False, "validators": []}}


class ProjectDetailOut(ProjectOut):
    your_roles = serializers.ListField(child=serializers.ChoiceField(choices=Role.choices))

    class Meta(ProjectOut.Meta):
        fields = [*ProjectOut.Meta.fields, "your_roles"]


class ProjectListCreateApi(APIView):
    @paginated_list(ProjectOut)
    def get(self, request):
        return paginate(self, request, selectors.projects_for_user(request.user), ProjectOut)

    @extend_schema(request=ProjectIn, responses={201: ProjectOut})
    def post(self, request):
        selectors.project_create_check(request.user)
        data = parse(ProjectIn, request.data)
        project = services.project_create(created_by=request.user, **data)
        return Response(ProjectOut(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    @extend_schema(responses=ProjectDetailOut)
    def get(self, request, slug: str):
        project = selectors.project_get_for_user(request.user, slug)
        return Response(ProjectOut(project).data | {"your_roles": sorted(project.user_roles)})

    @extend_schema(request=ProjectIn, responses=ProjectOut)
    def patch(self, request, slug: str):
        project = selectors.project_get_for_user(request.user, slug, roles=LEAD)
        data = parse(ProjectIn, request.data, partial=True)
        data.pop("slug", None)
        project = services.project_update(project=project, **data)
        return Response(ProjectOut(project).data)


class MemberOut(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")

    class Meta:
        model = Membership
        fields = ["username", "role", "created_at"]


class MemberListApi(APIView):
    class AddIn(serializers.Serializer):
        username = serializers.CharField()
        role = serializers.ChoiceField(choices=Role.choices)

    @extend_schema(responses=MemberOut(many=True))
    def get(self, request, slug: str):
        project = selectors.project_get_for_user(request.user, slug, roles=LEAD)
        return Response(MemberOut(selectors.members_list(project), many=True).data)

    @extend_schema(request=AddIn, responses={201: MemberOut})
    def post(self, request, slug: str):
        project = selectors.project_get_for_user(request.user, slug, roles=LEAD)
        data = parse(self.AddIn, request.data)
        membership = services.membership_add(project=project, username=data["username"], role=data["role"])
        return Response(MemberOut(membership).data, status=status.HTTP_201_CREATED)


class MemberDeleteApi(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request, slug: str, username: str, role: str):
        project = selectors.project_get_for_user(request.user, slug, roles=LEAD)
        services.membership_remove(project=project, username=username, role=role)
        return Response(status=status.HTTP_204_NO_CONTENT)


# ------------------------------------------------------------------ images and masks
class MaskOut(serializers.ModelSerializer):
    image = serializers.IntegerField(source="image_id")
    size = serializers.SerializerMethodField()
    rle = serializers.SerializerMethodField()

    class Meta:
        model = ObjectMask
        fields = ["id", "image", "label", "bbox", "area", "size", "rle", "provenance", "created_at"]

    def get_size(self, mask) -> list[int]:
        return [mask.image.height, mask.image.width]

    def get_rle(self, mask) -> dict:
        return {"size": [mask.image.height, mask.image.width], "counts": mask.rle_counts}


class ImageOut(serializers.ModelSerializer):
    mask_count = serializers.IntegerField(read_only=True)
    has_depth = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = ["id", "source_name", "sha256", "width", "height", "format", "has_depth", "intrinsics",
                  "source", "mask_count", "created_at"]

    def get_has_depth(self, image) -> bool:
        return bool(image.depth)


class ImageUploadOut(ImageOut):
    created = serializers.BooleanField(help_text="False: the same photo was already there (200).")
    masks_created = serializers.IntegerField()
    masks_duplicate = serializers.IntegerField()

    class Meta(ImageOut.Meta):
        fields = [*ImageOut.Meta.fields, "created", "masks_created", "masks_duplicate"]


class ImageDetailOut(ImageOut):
    masks = MaskOut(many=True)

    class Meta(ImageOut.Meta):
        fields = [*ImageOut.Meta.fields, "masks"]


class ImageListUploadApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    class UploadIn(serializers.Serializer):
        image = serializers.FileField(help_text="JPEG, PNG or WebP.")
        masks = serializers.ListField(
            child=serializers.FileField(), required=False, default=list,
            help_text="Binary PNG masks, one per object; the label is the file name without extension.",
        )
        annotations = serializers.CharField(
            required=False, allow_blank=True,
            help_text='JSON list of {"segmentation": COCO polygons or RLE, "label": str}.',
        )
        depth = serializers.FileField(required=False, help_text="float32 .npy in metres or 16-bit PNG in mm.")
        intrinsics = serializers.CharField(required=False, help_text="JSON 3x3 matrix.")

    class FiltersIn(serializers.Serializer):  # text refuses NUL characters, which PostgreSQL cannot compare
        search = serializers.CharField(required=False, allow_blank=True, max_length=255,
                                       help_text="Part of the source file name.")
        has_depth = serializers.ChoiceField(choices=["true", "false"], required=False)

    @paginated_list(ImageOut, parameters=[FiltersIn])
    def get(self, request, slug: str):
        project = selectors.project_get_for_user(request.user, slug)
        params = parse(self.FiltersIn, request.query_params)
        images = selectors.image_list(project)
        if name := params.get("search"):
            images = images.filter(source_name__icontains=name)
        if (has_depth := params.get("has_depth")) in ("true", "false"):
            images = images.exclude(depth="") if has_depth == "true" else images.filter(depth="")
        return paginate(self, request, images, ImageOut)

    @extend_schema(request=UploadIn, responses={201: ImageUploadOut, 200: ImageUploadOut})
    def post(self, request, slug: str):
        project = selectors.project_get_for_user(request.user, slug, roles=LEAD)
        data = parse(self.UploadIn, request.data)
        masks = [
            MaskInput(source_name=f.name, label=f.name.rsplit(".", 1)[0], png_bytes=f.read(),
                      provenance={"format": "upload", "file": f.name})
            for f in data["masks"]
        ]
        masks += [
            MaskInput(source_name=f"annotation {i}", label=str(a.get("label", "")), segmentation=a.get("segmentation"),
                      provenance={"format": "upload"} | {k: a[k] for k in ("predicted_iou", "stability_score") if k in a})
            for i, a in enumerate(_json_field(data.get("annotations"), "annotations", list))
        ]
        image_file = data["image"]
        depth = data.get("depth")
        item = ItemInput(
            name=image_file.name,
            image_bytes=image_file.read(),
            masks=masks,
            depth_bytes=depth.read() if depth else None,
            depth_name=depth.name if depth else "",
            intrinsics=_json_field(data.get("intrinsics"), "intrinsics", list, default=None),
            source={"format": "upload", "file": image_file.name, "uploaded_by": request.user.username},
        )
        try:
            outcome = ingest_item(project=project, item=item)
        except IngestRejected as exc:
            raise ValidationFailed(str(exc), code="rejected") from None
        image = selectors.image_list(project).get(pk=outcome.image.pk)
        body = ImageOut(image).data | {
            "created": outcome.created,
            "masks_created": outcome.masks_created,
            "masks_duplicate": outcome.masks_duplicate,
        }
        return Response(body, status=status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK)


def _json_field(raw, name: str, kind: type, default=None):
    if raw in (None, ""):
        return [] if default is None and kind is list and name == "annotations" else default
    value = jsonio.loads(raw, what=f"'{name}'")
    if not isinstance(value, kind):
        raise ValidationFailed(f"'{name}' must be a JSON {kind.__name__}.")
    if name == "annotations" and not all(isinstance(a, dict) for a in value):
        raise ValidationFailed("Each entry of 'annotations' must be an object with a 'segmentation'.")
    return value


class ImageDetailApi(APIView):
    @extend_schema(responses=ImageDetailOut)
    def get(self, request, slug: str, image_id: int):
        project = selectors.project_get_for_user(request.user, slug)
        image = selectors.image_get(project, image_id)
        image.mask_count = image.masks.count()
        masks = image.masks.select_related("image")
        return Response(ImageOut(image).data | {"masks": MaskOut(masks, many=True).data})


class ImageFileApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("variant", str, OpenApiParameter.PATH, enum=["file", "thumbnail", "depth"])],
        responses=binary("image/jpeg", "image/png", "image/webp", "application/octet-stream",
                         description="The photo, its JPEG thumbnail, or its depth map (float32 .npy, metres)."),
        operation_id="projects_images_file_retrieve",
    )
    def get(self, request, slug: str, image_id: int, variant: str):
        project = selectors.project_get_for_user(request.user, slug)
        image = selectors.image_get(project, image_id)
        if variant not in ("file", "thumbnail", "depth"):
            raise NotFound(f"No '{variant}' for an image; use file, thumbnail or depth.")
        if variant == "thumbnail":
            return stored_file_response(image.thumbnail.name, content_type="image/jpeg")
        if variant == "depth":
            return stored_file_response(image.depth.name, content_type="application/octet-stream",
                                        download_name=f"{image.pk}-depth.npy")
        content_type = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}[image.format]
        return stored_file_response(image.file.name, content_type=content_type)


class MaskListApi(APIView):
    @paginated_list(MaskOut, parameters=[
        OpenApiParameter("label", str), OpenApiParameter("image", int, description="An image id."),
    ])
    def get(self, request, slug: str):
        project = selectors.project_get_for_user(request.user, slug)
        masks = selectors.mask_list(project)
        if label := request.query_params.get("label"):
            masks = masks.filter(label=label)
        if image := request.query_params.get("image"):
            masks = masks.filter(image_id=int_from_text(image, "image", minimum=1))
        return paginate(self, request, masks, MaskOut)


class MaskPngApi(APIView):
    """The mask as a binary PNG (255 = object), for viewers that do not decode RLE."""

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY}, operation_id="projects_masks_png_retrieve")
    def get(self, request, slug: str, mask_id: int):
        project = selectors.project_get_for_user(request.user, slug)
        mask = selectors.mask_get(project, mask_id)
        array = mask_codec.decode(mask.rle_counts, mask.image.height, mask.image.width)
        buf = io.BytesIO()
        PILImage.fromarray((array * np.uint8(255)).astype(np.uint8), mode="L").save(buf, format="PNG")
        response = HttpResponse(buf.getvalue(), content_type="image/png")
        response["Cache-Control"] = "private, max-age=86400"
        return response
