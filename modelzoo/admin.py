from django.contrib import admin
from django.db.models import Count, Q, Sum

from modelzoo import selectors
from modelzoo.models import Candidate, Checkpoint, CheckpointShare, GenerationJob, GenerationJobItem, ProjectCheckpoint


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "backend", "parent", "public", "sha256", "created_at"]
    list_filter = ["backend", "public", "name"]
    readonly_fields = ["sha256"]


@admin.register(CheckpointShare)
class CheckpointShareAdmin(admin.ModelAdmin):
    list_display = ["checkpoint", "project", "shared_by", "created_at"]
    list_filter = ["project"]
    raw_id_fields = ["checkpoint", "shared_by"]


@admin.register(ProjectCheckpoint)
class ProjectCheckpointAdmin(admin.ModelAdmin):
    list_display = ["project", "checkpoint", "share"]
    list_filter = ["project"]


class JobItemInline(admin.TabularInline):
    model = GenerationJobItem
    extra = 0
    fields = ["item", "state", "done", "attempts", "error"]
    readonly_fields = fields
    can_delete = False
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).exclude(state=GenerationJobItem.State.DONE)


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "round", "state", "total_items", "total_candidates", "progress",
                    "started_at", "finished_at"]
    list_filter = ["state", "project"]
    readonly_fields = ["project", "round", "state", "steps", "candidates_per_item", "mix", "total_items",
                       "total_candidates", "created_by", "started_at", "finished_at"]
    inlines = [JobItemInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            done_candidates=Sum("job_items__done", default=0),
            items_done=Count("job_items", filter=Q(job_items__state=GenerationJobItem.State.DONE)),
            items_failed=Count("job_items", filter=Q(job_items__state=GenerationJobItem.State.FAILED)),
        )

    @admin.display(description="progress")
    def progress(self, job):
        p = selectors.generation_job_progress(job)
        return f"{p['done']}/{p['total']} ({p['items_failed']} failed, {p['candidates_per_s']}/s)"


@admin.register(Candidate)
class CandidateAdmin(admin.ModelAdmin):
    list_display = ["id", "item", "checkpoint", "seed", "steps", "num_faces", "created_at"]
    list_filter = ["checkpoint"]
    raw_id_fields = ["item"]
