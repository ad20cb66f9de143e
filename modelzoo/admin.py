from django.contrib import admin

from modelzoo.models import Candidate, Checkpoint, ProjectCheckpoint


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "backend", "parent", "created_at"]
    list_filter = ["backend", "name"]


@admin.register(ProjectCheckpoint)
class ProjectCheckpointAdmin(admin.ModelAdmin):
    list_display = ["project", "checkpoint", "share"]


@admin.register(Candidate)
class CandidateAdmin(admin.ModelAdmin):
    list_display = ["id", "item", "checkpoint", "seed", "num_faces", "created_at"]
    raw_id_fields = ["item"]
