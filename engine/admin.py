from django.contrib import admin, messages

from engine.errors import EngineError
from engine.models import ApiToken, Image, Membership, ObjectMask, Project, Round
from engine.rounds.generate import generation_job_start


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "candidates_per_item", "quality_threshold", "overlap", "ranking_protocol"]
    search_fields = ["name", "slug"]
    inlines = [MembershipInline]
    actions = ["start_generation"]

    @admin.action(description="Start generation for the selected projects (masks without candidates)")
    def start_generation(self, request, queryset):
        for project in queryset:
            try:
                job = generation_job_start(project=project, created_by=request.user)
            except EngineError as exc:
                self.message_user(request, f"{project.slug}: {exc.message}", messages.ERROR)
                continue
            self.message_user(request, f"{project.slug}: job {job.pk}, {job.total_items} items, "
                                       f"{job.total_candidates} candidates queued.")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["project", "user", "role", "created_at"]
    list_filter = ["role", "project"]


class ObjectMaskInline(admin.TabularInline):
    model = ObjectMask
    extra = 0
    fields = ["label", "area", "bbox", "provenance"]
    readonly_fields = fields
    show_change_link = True


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["id", "source_name", "project", "width", "height", "format", "created_at"]
    list_filter = ["project", "format"]
    search_fields = ["source_name", "sha256"]
    readonly_fields = ["sha256", "width", "height", "format", "created_at"]
    inlines = [ObjectMaskInline]


@admin.register(ObjectMask)
class ObjectMaskAdmin(admin.ModelAdmin):
    list_display = ["id", "label", "image", "area", "created_at"]
    list_filter = ["image__project", "label"]
    search_fields = ["label"]
    list_select_related = ["image"]
    readonly_fields = ["rle_counts", "rle_sha256", "bbox", "area"]


@admin.register(Round)
class RoundAdmin(admin.ModelAdmin):
    list_display = ["project", "index", "state", "quality_threshold", "opened_at", "closed_at"]
    list_filter = ["project", "state"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "key_sha256"]
