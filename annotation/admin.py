from django.contrib import admin

from annotation.models import ArtistMesh, Flag, Item, Judgement, Lease, Skip


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "round", "mask", "state", "is_gold", "judgements_done", "claims", "hard_case"]
    list_filter = ["project", "state", "is_gold", "hard_case"]
    raw_id_fields = ["mask", "gold_candidate", "round"]


@admin.register(Lease)
class LeaseAdmin(admin.ModelAdmin):
    """Read-only: leases move through annotation.services only."""

    list_display = ["id", "item", "annotator", "state", "created_at", "expires_at"]
    list_filter = ["state", "project"]
    raw_id_fields = ["item", "annotator", "project"]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Judgement)
class JudgementAdmin(admin.ModelAdmin):
    """Read-only: judgements are append-only; review through the API (reject)."""

    list_display = ["id", "item", "annotator", "winner", "rating", "status", "gold_correct", "created_at"]
    list_filter = ["status", "project", "below_threshold"]
    raw_id_fields = ["item", "annotator", "lease", "winner", "supersedes", "reviewed_by", "project"]

    def has_change_permission(self, request, obj=None):
        return False


for model in (Skip, Flag, ArtistMesh):
    admin.site.register(model)
