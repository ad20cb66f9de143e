from django.contrib import admin

from annotation.models import Item


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "round", "mask", "state", "is_gold", "judgements_done"]
    list_filter = ["project", "state", "is_gold"]
    raw_id_fields = ["mask", "gold_candidate", "round"]
