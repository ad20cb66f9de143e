"""Thin DRF views of annotation (contract: docs/annotation-api.md).

Each view parses input, fetches through a selector (which checks membership, role and
ownership) and calls one service. Errors are `engine.errors` types, rendered in one handler.
"""
from __future__ import annotations

import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors, services
from annotation.models import Flag, Judgement
from annotation.selectors import ANNOTATOR, ARTIST, LEAD
from engine.apis import paginate, parse
from engine.bounds import BigIntegerField
from engine.errors import NotFound, ValidationFailed
from engine.files import stored_file_response
from engine.models import JudgedRepresentation
from engine.parsers import JSONParser
from engine.schema import ERROR, binary, paginated_list
from engine.selectors import project_get_for_user


# ------------------------------------------------------------------ serializers
INT32_MAX = 2**31 - 1  # the database's integer columns


class ComparisonIn(serializers.Serializer):
    left = BigIntegerField()
    right = BigIntegerField()
    outcome = serializers.ChoiceField(choices=["left", "right", "equal"])
    decided_ms = serializers.IntegerField(min_value=0, max_value=INT32_MAX, required=False, allow_null=True)


class JudgementIn(serializers.Serializer):
    lease = BigIntegerField(required=False, allow_null=True)
    key = serializers.CharField(max_length=64)
    comparisons = ComparisonIn(many=True, required=False, default=list)
    ranking = serializers.ListField(child=serializers.ListField(child=BigIntegerField()),
                                    required=False, allow_null=True, default=None)
    winner = BigIntegerField()
    rating = BigIntegerField()
    layout = serializers.JSONField(required=False, allow_null=True, default=None)
    time_spent_ms = serializers.IntegerField(min_value=0, max_value=INT32_MAX, required=False, default=0)
    supersedes = BigIntegerField(required=False, allow_null=True, default=None)


def _is_int(value) -> bool:
    return type(value) is int


def _is_count(value) -> bool:
    return type(value) is int and 0 <= value <= INT32_MAX


def _is_opt_int(value) -> bool:
    return value is None or type(value) is int


def judgement_in(data) -> dict:
    """`JudgementIn`'s validated data. A submission as the workbench sends it (plain JSON types,
    nothing to coerce) is checked here directly; anything else goes through the serializer,
    which gives the same result or its 400. (The serializer costs about a millisecond per
    submission, more than all the statements of it.)"""
    if type(data) is not dict:
        return parse(JudgementIn, data)
    get = data.get
    key, comparisons, ranking = get("key"), get("comparisons", []), get("ranking")
    if not (_is_opt_int(get("lease")) and _is_int(get("winner")) and _is_int(get("rating"))
            and _is_count(get("time_spent_ms", 0)) and _is_opt_int(get("supersedes"))
            and type(key) is str and 0 < len(key) <= 64 and key.isascii() and key.isprintable()
            and key == key.strip() and type(comparisons) is list
            and (ranking is None or (type(ranking) is list
                                     and all(type(g) is list and all(map(_is_int, g)) for g in ranking)))):
        return parse(JudgementIn, data)
    comps = []
    for c in comparisons:
        if not (type(c) is dict and _is_int(c.get("left")) and _is_int(c.get("right"))
                and c.get("outcome") in ("left", "right", "equal") and type(c["outcome"]) is str
                and (c.get("decided_ms") is None or _is_count(c["decided_ms"]))):
            return parse(JudgementIn, data)
        comp = {"left": c["left"], "right": c["right"], "outcome": c["outcome"]}
        if "decided_ms" in c:
            comp["decided_ms"] = c["decided_ms"]
        comps.append(comp)
    out = {"key": key, "comparisons": comps, "ranking": ranking, "winner": data["winner"], "rating": data["rating"],
           "layout": get("layout"), "time_spent_ms": get("time_spent_ms", 0), "supersedes": get("supersedes")}
    if "lease" in data:  # no default: the serializer leaves it out when absent
        out["lease"] = data["lease"]
    return out


class ComparisonOut(serializers.Serializer):
    index = serializers.IntegerField()
    left = serializers.IntegerField(source="left_id")
    right = serializers.IntegerField(source="right_id")
    outcome = serializers.CharField()
    decided_ms = serializers.IntegerField(allow_null=True)


class JudgementOut(serializers.ModelSerializer):
    annotator = serializers.CharField(source="annotator.username")
    comparisons = ComparisonOut(many=True)
    winner = serializers.IntegerField(source="winner_id")
    lease = serializers.IntegerField(source="lease_id")
    supersedes = serializers.IntegerField(source="supersedes_id", allow_null=True)

    class Meta:
        model = Judgement
        fields = ["id", "item", "lease", "key", "annotator", "protocol", "comparisons", "ranking", "winner",
                  "rating", "below_threshold", "layout", "model_layout", "time_spent_ms", "status",
                  "supersedes", "review_reason", "created_at"]


class LeaseIn(serializers.Serializer):
    lease = BigIntegerField()


class SkipIn(LeaseIn):
    reason = serializers.CharField(max_length=2000, allow_blank=True, required=False, default="")


class FlagIn(LeaseIn):
    reason = serializers.ChoiceField(choices=Flag.Reason.values)
    note = serializers.CharField(max_length=2000, allow_blank=True, required=False, default="")


def _lease_of(user, lease_id: int):
    return selectors.lease_get_for_annotator(user, lease_id)


def _judgement_body(judgement: Judgement, *, loaded: bool = False) -> dict:
    """`loaded`: the judgement comes from the service with its annotator and comparisons."""
    return selectors.judgement_body(judgement if loaded else selectors.judgement_for_body(judgement.pk))


class NextItemIn(serializers.Serializer):
    """An object (or no body at all); anything else is a 400."""

    exclude = serializers.ListField(child=serializers.IntegerField(min_value=-(2**63), max_value=2**63 - 1),
                                    required=False, default=list, max_length=10)  # ids are bigint


class NextItemOut(serializers.Serializer):
    """The next-item payload (docs/annotation-api.md), as `selectors.lease_payload` builds it."""

    class NextItemLease(serializers.Serializer):
        id = serializers.IntegerField()
        expires_at = serializers.DateTimeField()
        seconds = serializers.IntegerField(min_value=0)

    class NextItemItem(serializers.Serializer):
        class NextItemQualityScale(serializers.Serializer):
            min = serializers.IntegerField()
            max = serializers.IntegerField()
            threshold = serializers.IntegerField()
            labels = serializers.DictField(child=serializers.CharField(), help_text="Rating (as text) -> label.")

        class NextItemImage(serializers.Serializer):
            id = serializers.IntegerField()
            width = serializers.IntegerField()
            height = serializers.IntegerField()
            url = serializers.CharField()
            thumbnail_url = serializers.CharField(allow_null=True)
            intrinsics = serializers.ListField(child=serializers.ListField(child=serializers.FloatField()),
                                               allow_null=True, help_text="3x3 camera matrix, pixels.")
            depth_url = serializers.CharField(allow_null=True)

        class NextItemMask(serializers.Serializer):
            class MaskRle(serializers.Serializer):
                size = serializers.ListField(child=serializers.IntegerField(), help_text="[height, width]")
                counts = serializers.CharField(help_text="COCO compressed RLE.")

            id = serializers.IntegerField()
            label = serializers.CharField(allow_blank=True)
            bbox = serializers.ListField(child=serializers.FloatField(), help_text="[x, y, w, h], pixels.")
            rle = MaskRle()
            png_url = serializers.CharField()

        class NextItemCandidate(serializers.Serializer):
            class CandidateLayout(serializers.Serializer):
                rotation = serializers.ListField(child=serializers.FloatField(), allow_null=True,
                                                 help_text="Quaternion (w, x, y, z).")
                translation = serializers.ListField(child=serializers.FloatField(), allow_null=True)
                scale = serializers.ListField(child=serializers.FloatField(), allow_null=True)

            id = serializers.IntegerField()
            glb_url = serializers.CharField(allow_null=True, help_text="The full GLB; null for a splat-only candidate.")
            glb_compact_url = serializers.CharField(allow_null=True, help_text="The browser's GLB; null without a mesh.")
            splat_url = serializers.CharField(allow_null=True, help_text="The browser's splat; null without one.")
            splat_format = serializers.ChoiceField(choices=["spz"], allow_null=True)
            preview_url = serializers.CharField()
            layout = CandidateLayout()
            num_vertices = serializers.IntegerField()
            num_faces = serializers.IntegerField()
            num_gaussians = serializers.IntegerField()
            textured = serializers.BooleanField(help_text="The mesh has UV textures.")
            drawn_as = serializers.ChoiceField(
                choices=JudgedRepresentation.values,
                help_text="How to draw it: the item's judged_representation when the candidate has it, else the "
                          "representation it has.")

        id = serializers.IntegerField()
        protocol = serializers.CharField()
        layout_stage = serializers.BooleanField()
        quality_scale = NextItemQualityScale()
        image = NextItemImage()
        mask = NextItemMask()
        candidates = NextItemCandidate(many=True, help_text="In the lease's order.")
        sides = serializers.ListField(child=serializers.BooleanField(),
                                      help_text="sides[k-1] true: the king is on the left in comparison k.")
        judged_representation = serializers.ChoiceField(
            choices=JudgedRepresentation.values, help_text="The project's setting: what annotators judge.")

    lease = NextItemLease()
    item = NextItemItem()


class JsonOnly(DefaultContentNegotiation):
    """For views that render JSON only: JSON whatever the Accept header says, without DRF's
    media-type matching (a tenth of a millisecond per request on the queue's hot paths)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


# ------------------------------------------------------------------ annotator
class NextItemApi(APIView):
    renderer_classes = [JSONRenderer]  # an API for the workbench and scripts: no browsable page to negotiate
    content_negotiation_class = JsonOnly

    @extend_schema(request=NextItemIn, responses={
        200: NextItemOut, 204: None, 429: ERROR,
    }, description="The next item under a new lease (docs/annotation-api.md); 204 when the queue is empty, "
                   "429 at the daily cap.")
    def post(self, request, slug: str):
        project = selectors.project_get_for_member(request.user, slug, roles=ANNOTATOR)
        data = request.data  # no body: {}; a body that is not an object (false, [], null) is a 400
        exclude = [] if type(data) is dict and not data else parse(NextItemIn, data)["exclude"]
        lease, _ = services.lease_next(project=project, annotator=request.user, exclude=exclude)
        if lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(selectors.lease_payload(lease, project=project))


class LeaseRenewApi(APIView):
    @extend_schema(request=None, responses=inline_serializer("LeaseRenewed", {
        "expires_at": serializers.DateTimeField(), "seconds": serializers.IntegerField()}))
    def post(self, request, lease_id: int):
        lease = services.lease_renew(lease=_lease_of(request.user, lease_id))
        return Response({"expires_at": lease.expires_at, "seconds": lease.project.lease_seconds})


class LeaseReleaseApi(APIView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request, lease_id: int):
        services.lease_release(lease=_lease_of(request.user, lease_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class JudgementSubmitApi(APIView):
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonOnly

    @extend_schema(request=JudgementIn, responses={201: JudgementOut, 200: JudgementOut})
    def post(self, request, item_id: int):
        # The lease named in the body (validated below) is read with the item, in one statement.
        named = request.data.get("lease") if type(request.data) is dict else None
        item = selectors.item_get_for_user(request.user, item_id, roles=ANNOTATOR, lease_id=named)
        data = judgement_in(request.data)
        supersedes = lease = None
        if data["supersedes"] is not None:
            supersedes = selectors.judgement_get_for_user(request.user, data["supersedes"])
        elif data.get("lease") is not None:
            lease = selectors.lease_get_for_item(request.user, item, data["lease"])
        judgement, created = services.judgement_submit(
            item=item, annotator=request.user, lease=lease, key=data["key"], supersedes=supersedes,
            data=services.JudgementInput(
                comparisons=data["comparisons"], ranking=data["ranking"], winner=data["winner"],
                rating=data["rating"], layout=data["layout"], time_spent_ms=data["time_spent_ms"],
            ),
        )
        return Response(_judgement_body(judgement, loaded=created),
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class SkipApi(APIView):
    @extend_schema(request=SkipIn, responses=inline_serializer("Skipped", {
        "item": serializers.IntegerField(), "lease": serializers.IntegerField(),
        "skipped": serializers.BooleanField(), "reason": serializers.CharField()}))
    def post(self, request, item_id: int):
        item = selectors.item_get_for_user(request.user, item_id, roles=ANNOTATOR)
        data = parse(SkipIn, request.data)
        skip = services.item_skip(item=item, annotator=request.user, reason=data["reason"],
                                  lease=selectors.lease_get_for_item(request.user, item, data["lease"]))
        return Response({"item": item.pk, "lease": skip.lease_id, "skipped": True, "reason": skip.reason})


class FlagApi(APIView):
    @extend_schema(request=FlagIn, responses=inline_serializer("Flagged", {
        "item": serializers.IntegerField(), "lease": serializers.IntegerField(),
        "flagged": serializers.BooleanField(), "reason": serializers.CharField(), "note": serializers.CharField()}))
    def post(self, request, item_id: int):
        item = selectors.item_get_for_user(request.user, item_id, roles=ANNOTATOR)
        data = parse(FlagIn, request.data)
        flag = services.item_flag(item=item, annotator=request.user, reason=data["reason"], note=data["note"],
                                  lease=selectors.lease_get_for_item(request.user, item, data["lease"]))
        return Response({"item": item.pk, "lease": flag.lease_id, "flagged": True, "reason": flag.reason,
                         "note": flag.note})


class JudgementFilters(serializers.Serializer):
    """The filters of the judgement lists (text fields refuse NUL characters, which PostgreSQL cannot compare)."""

    annotator = serializers.CharField(required=False, max_length=150, help_text="Username.")
    status = serializers.CharField(required=False, allow_blank=True, max_length=32,
                                   help_text="accepted, rejected or superseded.")


class JudgementListApi(APIView):
    """Annotators see their own judgements; leads see everyone's (filter ?annotator=, ?status=)."""

    @paginated_list(JudgementOut, parameters=[JudgementFilters])
    def get(self, request, slug: str):
        project = project_get_for_user(request.user, slug, roles=ANNOTATOR + LEAD)
        params = parse(JudgementFilters, request.query_params)
        qs = selectors.judgement_list(project=project, user=request.user)
        if username := params.get("annotator"):
            qs = qs.filter(annotator__username=username)
        if state := params.get("status"):
            qs = qs.filter(status=state)
        return paginate(self, request, qs, JudgementOut)


class JudgementDetailApi(APIView):
    @extend_schema(responses=JudgementOut)
    def get(self, request, judgement_id: int):
        return Response(_judgement_body(selectors.judgement_get_for_user(request.user, judgement_id)))


class MyQualityApi(APIView):
    """The caller's own figures (gold accuracy, agreement, today's count against the cap)."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, slug: str):
        project = project_get_for_user(request.user, slug, roles=ANNOTATOR)
        rows = selectors.annotator_quality(project=project, annotator_ids=[request.user.pk])
        return Response(rows[0] if rows else {"annotator": request.user.username, "judgements": 0,
                                              "daily_cap": project.daily_cap})


# ------------------------------------------------------------------ lead
class ReviewQueueApi(APIView):
    @paginated_list(JudgementOut, parameters=[JudgementFilters],
                    description="status: accepted unless given; empty: every status.")
    def get(self, request, slug: str):
        project = project_get_for_user(request.user, slug, roles=LEAD)
        params = parse(JudgementFilters, request.query_params)
        qs = selectors.review_queue(project=project, annotator_username=params.get("annotator"),
                                    status=params.get("status", Judgement.Status.ACCEPTED) or None)
        return paginate(self, request, qs, JudgementOut)


class JudgementRejectApi(APIView):
    class RejectIn(serializers.Serializer):
        reason = serializers.CharField(max_length=2000, allow_blank=True, required=False, default="")

    @extend_schema(request=RejectIn, responses=JudgementOut)
    def post(self, request, judgement_id: int):
        judgement = selectors.judgement_get_for_user(request.user, judgement_id, lead_only=True)
        data = parse(self.RejectIn, request.data)
        judgement = services.judgement_reject(judgement=judgement, reviewer=request.user, reason=data["reason"])
        return Response(_judgement_body(judgement))


class JudgementRestoreApi(APIView):
    @extend_schema(request=None, responses=JudgementOut,
                   description="Take a rejection back: the judgement is accepted again (exports, QC, its item's slot).")
    def post(self, request, judgement_id: int):
        judgement = selectors.judgement_get_for_user(request.user, judgement_id, lead_only=True)
        judgement = services.judgement_restore(judgement=judgement, reviewer=request.user)
        return Response(_judgement_body(judgement))


class JudgementReplayApi(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT, description=(
        "A judgement to replay: `item` as the next-item payload gave it under the judgement's lease (photo, mask, "
        "candidates in the annotator's order, `sides`), with each candidate's checkpoint and the item's gold answer; "
        "`judgement` (comparisons in order with outcome and decided_ms, winner, rating, layout). Leads, and the "
        "judgement's annotator."))
    def get(self, request, judgement_id: int):
        return Response(selectors.judgement_replay(selectors.judgement_get_for_user(request.user, judgement_id)))


class AnnotatorQualityApi(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, slug: str):
        project = project_get_for_user(request.user, slug, roles=LEAD)
        return Response({"annotators": selectors.annotator_quality(project=project)})


class ProgressApi(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, slug: str):
        project = project_get_for_user(request.user, slug)
        return Response(selectors.item_progress(project=project))


class ItemReopenApi(APIView):
    class ReopenIn(serializers.Serializer):
        reason = serializers.CharField(allow_blank=True, required=False, default="", help_text="Kept to 2000 characters.")

    @extend_schema(request=ReopenIn, responses=inline_serializer("ItemReopened", {
        "id": serializers.IntegerField(), "state": serializers.CharField()}))
    def post(self, request, item_id: int):
        item = selectors.item_get_for_user(request.user, item_id, roles=LEAD)
        data = parse(self.ReopenIn, request.data)
        item = services.item_reopen(item=item, reason=data["reason"][:2000])
        return Response({"id": item.pk, "state": item.state})


class ItemGoldApi(APIView):
    class GoldIn(serializers.Serializer):
        candidate = BigIntegerField(allow_null=True)

    @extend_schema(request=GoldIn, responses=inline_serializer("ItemGold", {
        "id": serializers.IntegerField(), "is_gold": serializers.BooleanField(),
        "gold_candidate": serializers.IntegerField(allow_null=True)}))
    def post(self, request, item_id: int):
        item = selectors.item_get_for_user(request.user, item_id, roles=LEAD)
        data = parse(self.GoldIn, request.data)
        item = services.item_set_gold(item=item, candidate_id=data["candidate"])
        return Response({"id": item.pk, "is_gold": item.is_gold, "gold_candidate": item.gold_candidate_id})


# ------------------------------------------------------------------ artists
class ArtistItemOut(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.CharField()
    mask = serializers.IntegerField(source="mask_id")
    image = serializers.IntegerField(source="mask.image_id")
    label = serializers.CharField(source="mask.label")
    reason = serializers.CharField(source="state_reason")


class ArtistQueueApi(APIView):
    @paginated_list(ArtistItemOut)
    def get(self, request, slug: str):
        project = project_get_for_user(request.user, slug, roles=ARTIST)
        qs = selectors.artist_queue(project=project)
        return paginate(self, request, qs, ArtistItemOut)


class ArtistMeshApi(APIView):
    parser_classes = [MultiPartParser, FormParser, JSONParser]  # engine.parsers: the engine's JSON limits

    class MeshIn(serializers.Serializer):
        file = serializers.FileField(help_text="A .glb (glTF 2.0 binary).")
        note = serializers.CharField(required=False, allow_blank=True)
        layout = serializers.CharField(required=False, help_text=(
            "JSON {rotation: [w,x,y,z], translation: [x,y,z], scale: [x,y,z]}: where the mesh sits in the "
            "photo's camera frame. Without it the mesh is a shape only (the reference trainer skips it)."))
        time_spent_ms = serializers.IntegerField(required=False, min_value=0)

    class MeshOut(serializers.Serializer):
        id = serializers.IntegerField()
        item = serializers.IntegerField()
        sha256 = serializers.CharField()
        size_bytes = serializers.IntegerField()
        layout = serializers.JSONField(allow_null=True)
        time_spent_ms = serializers.IntegerField(allow_null=True)
        created_at = serializers.DateTimeField()

    @extend_schema(request={"multipart/form-data": MeshIn}, responses={201: MeshOut, 200: MeshOut})
    def post(self, request, item_id: int):
        item = selectors.item_get_for_user(request.user, item_id, roles=ARTIST)
        upload = request.FILES.get("file")
        if upload is None:
            raise ValidationFailed("Send the mesh as a multipart field 'file' (a .glb, glTF 2.0 binary).")
        layout = request.data.get("layout")
        if isinstance(layout, str) and layout.strip():
            try:
                layout = json.loads(layout)
            except ValueError:
                raise ValidationFailed("layout must be JSON: {rotation, translation, scale}.",
                                       code="invalid_layout") from None
        elif isinstance(layout, str):
            layout = None
        spent = request.data.get("time_spent_ms")
        if spent not in (None, ""):
            try:
                spent = int(spent)
            except (TypeError, ValueError):
                raise ValidationFailed("time_spent_ms must be a whole number of milliseconds.",
                                       code="invalid_time_spent") from None
        else:
            spent = None
        mesh, created = services.artist_mesh_upload(item=item, uploaded_by=request.user, data=upload.read(),
                                                    note=str(request.data.get("note", "")), layout=layout,
                                                    time_spent_ms=spent)
        body = {"id": mesh.pk, "item": item.pk, "sha256": mesh.sha256, "size_bytes": mesh.size_bytes,
                "layout": mesh.layout, "time_spent_ms": mesh.time_spent_ms, "created_at": mesh.created_at}
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(responses=binary("model/gltf-binary", description="The latest artist mesh."))
    def get(self, request, item_id: int):
        item = selectors.item_get_for_user(request.user, item_id, roles=ARTIST + LEAD + ["trainer"])
        mesh = item.artist_meshes.order_by("-id").first()
        if mesh is None:
            raise NotFound(f"Item {item_id} has no artist mesh yet.")
        return stored_file_response(mesh.file.name, content_type="model/gltf-binary")


class SceneDownloadApi(APIView):
    """The scene of one photo as a zip: each judged object's mesh (GLB) and splat (3DGS PLY) with its
    layout, and the splats composed in the camera frame (annotation/scenes.py), for any member."""

    @extend_schema(responses=binary("application/zip", description="scene.json, objects/<item>.glb|.ply, "
                                                                    "scene_splats.ply"))
    def get(self, request, slug: str, image_id: int):
        from django.http import HttpResponse

        from annotation.scenes import scene_archive

        _project, image, objects = selectors.scene_objects_for_user(request.user, slug=slug, image_id=image_id)
        if not objects:
            raise NotFound(f"Image {image_id} has no judged objects yet: nothing to compose.", code="no_scene")
        response = HttpResponse(scene_archive(image=image, objects=objects), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="scene-image-{image.pk}.zip"'
        return response

