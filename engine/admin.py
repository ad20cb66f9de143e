from django.contrib import admin

from engine.models import ApiToken, Image, Membership, ObjectMask, Project, Round


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "candidates_per_item", "quality_threshold", "overlap", "ranking_protocol"]
    search_fields = ["name", "slug"]
    inlines = [MembershipInline]


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
