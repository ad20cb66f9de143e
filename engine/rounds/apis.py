"""Thin DRF views of a round's steps: rounds (leads open and close them), generation jobs,
training runs (trainers and leads start them and make a checkpoint current)."""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from engine import selectors as engine_selectors
from engine.apis import paginate, parse
from engine.bounds import BigIntegerField, PositiveIntegerField
from engine.errors import ValidationFailed
from engine.models import Role, TrainingRun
from engine.rounds import generate, recovery, selectors, services, train
from engine.schema import paginated_list
from modelzoo import selectors as zoo_selectors
from modelzoo.apis import MixEntry
from modelzoo.models import GenerationJob

LEAD = [Role.LEAD]
TRAINING = [Role.LEAD, Role.TRAINER]


class RoundListOpenApi(APIView):
    class OpenIn(serializers.Serializer):
        quality_threshold = serializers.IntegerField(required=False, min_value=1, max_value=5)
        mask_ids = serializers.ListField(child=BigIntegerField(), required=False, allow_null=True)
        image_ids = serializers.ListField(child=BigIntegerField(), required=False, allow_null=True,
                                          help_text="Photos whose masks are generated for (with mask_ids, if given).")
        steps = serializers.IntegerField(required=False, min_value=1, max_value=100)
        candidates_per_item = serializers.IntegerField(required=False, min_value=1, max_value=64)
        mix = MixEntry(many=True, required=False, allow_empty=False,
                       help_text="The checkpoints and their shares of the N seeds; becomes the project's mix "
                                 "(default: the project's mix as it is).")
        pre_rank = serializers.DictField(
            required=False, allow_null=True,
            help_text="{ranker: id of a ranker checkpoint, generate: M (32), shown: N (6), random: R (2)}: generate M "
                      "candidates per item and show the ranker's top N plus R drawn from the rest.")

    @extend_schema(responses={200: {"type": "array", "items": {"type": "object"}}})
    def get(self, request, slug: str):
        project = engine_selectors.project_get_for_user(request.user, slug)
        return Response(selectors.rounds_status(project=project))

    @extend_schema(request=OpenIn, responses={201: OpenApiTypes.OBJECT})
    def post(self, request, slug: str):
        project = engine_selectors.project_get_for_user(request.user, slug, roles=LEAD)
        data = parse(self.OpenIn, request.data)
        if data.get("mix"):
            data["mix"] = zoo_selectors.mix_resolve(project, data["mix"])
        rnd = services.round_open(project=project, created_by=request.user, **data)
        return Response(selectors.round_status(round=rnd), status=status.HTTP_201_CREATED)


class RoundCloseApi(APIView):
    class CloseIn(serializers.Serializer):
        export = serializers.BooleanField(default=True)
        pairing = serializers.ChoiceField(choices=["recorded", "winner_beat", "ranking"],
                                          default=services.DEFAULT_PAIRING)

    @extend_schema(request=CloseIn, responses=OpenApiTypes.OBJECT)
    def post(self, request, slug: str, index: int):
        project = engine_selectors.project_get_for_user(request.user, slug, roles=LEAD)
        data = parse(self.CloseIn, request.data)
        rnd = services.round_close(round=services.round_get(project=project, index=index), build="enqueue",
                                   created_by=request.user, **data)
        return Response(selectors.round_status(round=rnd))


class RoundCheckpointApi(APIView):
    class RoundCheckpointIn(serializers.Serializer):
        checkpoint = BigIntegerField()
        share = serializers.FloatField(default=services.DEFAULT_NEW_SHARE)

    @extend_schema(request=RoundCheckpointIn, responses=OpenApiTypes.OBJECT)
    def post(self, request, slug: str, index: int):
        project = engine_selectors.project_get_for_user(request.user, slug, roles=TRAINING)
        data = parse(self.RoundCheckpointIn, request.data)
        checkpoint = zoo_selectors.checkpoints_for_project(project).filter(pk=data["checkpoint"]).first()
        if checkpoint is None:  # unknown, or not one this project may use (modelzoo.selectors)
            raise ValidationFailed(f"No checkpoint {data['checkpoint']} that project '{slug}' may use; a lead of it "
                                   "who sees the checkpoint can share it (POST /api/v1/checkpoints/<id>/shares/).",
                                   code="no_checkpoint")
        rnd = services.round_checkpoint_set(round=services.round_get(project=project, index=index),
                                            checkpoint=checkpoint, share=data["share"])
        return Response(selectors.round_status(round=rnd))


class TrainingRunOut(serializers.ModelSerializer):
    round = serializers.IntegerField(source="round.index", allow_null=True, default=None)

    class Meta:
        model = TrainingRun
        fields = ["id", "round", "stage", "sft_snapshot", "dpo_snapshot", "parent", "hyperparameters", "state",
                  "progress", "checkpoint", "error", "created_at", "finished_at"]


class TrainingRunListCreateApi(APIView):
    class RunIn(serializers.Serializer):
        stage = serializers.ChoiceField(choices=["sft", "dpo", "both"], default="both")
        sft_snapshot = BigIntegerField(required=False, allow_null=True, default=None)
        dpo_snapshot = BigIntegerField(required=False, allow_null=True, default=None)
        round = PositiveIntegerField(required=False, allow_null=True, default=None)
        parent = BigIntegerField(required=False, allow_null=True, default=None)
        hyperparameters = serializers.DictField(required=False, default=dict)

    @extend_schema(responses=TrainingRunOut(many=True), description="The project's latest 50 training runs.")
    def get(self, request, slug: str):
        project = engine_selectors.project_get_for_user(request.user, slug, roles=TRAINING)
        return Response(TrainingRunOut(selectors.training_run_list(project=project)[:50], many=True).data)

    @extend_schema(request=RunIn, responses={202: TrainingRunOut})
    def post(self, request, slug: str):
        project = engine_selectors.project_get_for_user(request.user, slug, roles=TRAINING)
        data = parse(self.RunIn, request.data)
        rnd = services.round_get(project=project, index=data["round"]) if data["round"] else None
        sft, dpo = data["sft_snapshot"], data["dpo_snapshot"]
        if rnd is not None:  # a round's own snapshots unless given
            sft, dpo = sft or rnd.sft_snapshot_id, dpo or rnd.dpo_snapshot_id
        run = train.training_run_create(project=project, stage=data["stage"], sft_snapshot_id=sft,
                                           dpo_snapshot_id=dpo, parent=data["parent"], round=rnd,
                                           hyperparameters=data["hyperparameters"], created_by=request.user)
        train.training_run_enqueue(run=run)
        return Response(TrainingRunOut(run).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunDetailApi(APIView):
    @extend_schema(responses=TrainingRunOut)
    def get(self, request, slug: str, run_id: int):
        project = engine_selectors.project_get_for_user(request.user, slug, roles=TRAINING)
        return Response(TrainingRunOut(selectors.training_run_get(project=project, run_id=run_id)).data)


class JobOut(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()

    class Meta:
        model = GenerationJob
        fields = ["id", "round", "state", "steps", "candidates_per_item", "mix", "total_items",
                  "total_candidates", "started_at", "finished_at", "progress"]

    def get_progress(self, job) -> dict:
        return zoo_selectors.generation_job_progress(job)


class JobIn(serializers.Serializer):
    masks = serializers.ListField(child=BigIntegerField(), required=False, allow_empty=False)
    steps = serializers.IntegerField(required=False, min_value=1, max_value=100)
    candidates_per_item = serializers.IntegerField(required=False, min_value=1, max_value=64)


class JobDetailOut(JobOut):
    failures = serializers.ListField(child=serializers.DictField(), help_text="Failed items: item_id, error, attempts.")

    class Meta(JobOut.Meta):
        fields = [*JobOut.Meta.fields, "failures"]


class JobFilters(serializers.Serializer):
    round = PositiveIntegerField(required=False, help_text="A round's index: its jobs only.")


class GenerationJobListCreateApi(APIView):
    @paginated_list(JobOut, parameters=[JobFilters])
    def get(self, request, slug: str):
        project = engine_selectors.project_get_for_user(request.user, slug, roles=[Role.LEAD, Role.TRAINER])
        params = parse(JobFilters, request.query_params)
        jobs = zoo_selectors.generation_jobs(project)
        if params.get("round") is not None:
            jobs = jobs.filter(round__index=params["round"])
        return paginate(self, request, jobs, JobOut)

    @extend_schema(request=JobIn, responses={201: JobOut})
    def post(self, request, slug: str):
        project = engine_selectors.project_get_for_user(request.user, slug, roles=[Role.LEAD])
        data = parse(JobIn, request.data)
        job = generate.generation_job_start(project=project, created_by=request.user, mask_ids=data.get("masks"),
                                            steps=data.get("steps"),
                                            candidates_per_item=data.get("candidates_per_item"))
        return Response(JobOut(zoo_selectors.generation_job_get(project, job.pk)).data, status=status.HTTP_201_CREATED)


class GenerationJobDetailApi(APIView):
    @extend_schema(responses=JobDetailOut)
    def get(self, request, slug: str, job_id: int):
        project = engine_selectors.project_get_for_user(request.user, slug, roles=[Role.LEAD, Role.TRAINER])
        job = zoo_selectors.generation_job_get(project, job_id)
        return Response(JobOut(job).data | {"failures": zoo_selectors.generation_job_failures(job)})


class GenerationJobRetryApi(APIView):
    @extend_schema(request=None, responses={201: JobOut}, description=(
        "Generate the job's failed items again, as a new job in the same (open) round; the failures stay listed "
        "on this job, marked retried."))
    def post(self, request, slug: str, job_id: int):
        project = engine_selectors.project_get_for_user(request.user, slug, roles=[Role.LEAD])
        retry = generate.generation_job_retry_failed(job=zoo_selectors.generation_job_get(project, job_id),
                                                     created_by=request.user)
        return Response(JobOut(zoo_selectors.generation_job_get(project, retry.pk)).data,
                        status=status.HTTP_201_CREATED)


class RoundRecoverApi(APIView):
    class RecoverIn(serializers.Serializer):
        ranker = BigIntegerField(help_text="The ranker checkpoint that orders the new seeds.")
        generate = serializers.IntegerField(default=32, min_value=1, max_value=256,
                                            help_text="M: new seeds per hard case.")
        shown = serializers.IntegerField(default=6, min_value=1, max_value=64, help_text="N: the ranker's top N shown.")
        random = serializers.IntegerField(default=2, min_value=0, max_value=64,
                                          help_text="R: drawn from the rest and shown too.")
        items = serializers.ListField(child=BigIntegerField(), required=False, allow_empty=False,
                                      help_text="These hard cases only (default: every one waiting for an artist).")
        steps = serializers.IntegerField(required=False, min_value=1, max_value=100)

    @extend_schema(request=RecoverIn, responses={201: JobOut}, description=(
        "Hard-case recovery: every hard case of the open round waiting for an artist (or `items`) is judged again "
        "on M new seeds, ranked, of which annotators see the top N plus R drawn from the rest. Each gets a "
        "recovery item; the hard case is done if the recovery's winner is rated at least alpha, and goes to the "
        "artists if not. The round's status counts them under hard_case_recovery."))
    def post(self, request, slug: str, index: int):
        project = engine_selectors.project_get_for_user(request.user, slug, roles=LEAD)
        data = parse(self.RecoverIn, request.data)
        job = recovery.hard_cases_recover(
            project=project, round_index=index, created_by=request.user, item_ids=data.get("items"),
            steps=data.get("steps"),
            pre_rank={k: data[k] for k in ("ranker", "generate", "shown", "random")})
        return Response(JobOut(zoo_selectors.generation_job_get(project, job.pk)).data, status=status.HTTP_201_CREATED)
