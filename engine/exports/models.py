"""Dataset snapshots: immutable, versioned exports of a project's judgements for trainers.

No logic here: `engine.exports.services` defines and builds snapshots; `state` moves only
through `services.snapshot_transition`.
"""
from django.conf import settings
from django.db import models
from django.utils import timezone

from engine.models import WorkerHeld


class Snapshot(WorkerHeld):
    class Kind(models.TextChoices):
        SFT = "sft", "SFT (chosen candidates)"
        DPO = "dpo", "DPO (preference pairs)"

    class Format(models.TextChoices):
        PARQUET = "parquet", "Parquet shards + dataset card"
        WEBDATASET = "webdataset", "WebDataset tar shards"
        JSONL = "jsonl", "JSONL pointing at stored files"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        BUILDING = "building", "Building"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    project = models.ForeignKey("engine.Project", on_delete=models.CASCADE, related_name="snapshots")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    format = models.CharField(max_length=16, choices=Format.choices)
    definition = models.JSONField(
        help_text="Normalised definition: filters, pairing, since, and the data watermark (max ids included)."
    )
    definition_sha256 = models.CharField(
        max_length=64, help_text="SHA-256 of the canonical JSON of (project, kind, format, definition)."
    )
    since = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Incremental: only judgements and artist meshes newer than this snapshot's watermark.",
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    items_total = models.PositiveIntegerField(default=0, help_text="Items selected (progress denominator).")
    items_done = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveBigIntegerField(default=0, help_text="Rows (SFT rows or DPO pairs) written so far.")
    rows_total = models.PositiveBigIntegerField(null=True, blank=True, help_text="Rows in the snapshot, once built.")
    manifest = models.JSONField(default=dict, blank=True,
                                help_text="{files: [{path, size, sha256, storage_name}], counts}.")
    error = models.TextField(blank=True, help_text="Why the build failed, when it did.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    built_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Defining the same snapshot twice returns the first: a definition names one dataset.
            models.UniqueConstraint(fields=["project", "definition_sha256"], name="snapshot_unique_definition"),
        ]
        indexes = [models.Index(fields=["project", "-created_at"], name="snapshot_project_idx")]

    def __str__(self) -> str:
        return f"snapshot {self.pk} ({self.kind}/{self.format}, {self.state})"
