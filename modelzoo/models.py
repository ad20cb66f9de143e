"""Django glue of the model zoo: the checkpoint registry, generation jobs, candidates."""
from django.conf import settings
from django.db import models
from django.utils import timezone


class Checkpoint(models.Model):
    """A model version that can generate candidates, with its lineage."""

    name = models.CharField(max_length=100, help_text="Model family, e.g. 'builtin'.")
    version = models.CharField(max_length=50)
    backend = models.CharField(max_length=50, help_text="Generator backend that runs it: builtin, http, ...")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    file = models.FileField(max_length=300, blank=True, help_text="Weights in storage (content-addressed).")
    sha256 = models.CharField(max_length=64, blank=True)
    config = models.JSONField(default=dict, blank=True, help_text="Backend options, e.g. the server URL.")
    recipe = models.JSONField(default=dict, blank=True, help_text="How it was trained: command, data, seeds.")
    evaluation = models.JSONField(default=dict, blank=True, help_text="Offline metrics on the gold set.")
    lineage = models.JSONField(default=dict, blank=True, help_text="Snapshot ids and rounds it was trained from.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="checkpoint_unique_version")]

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"


class ProjectCheckpoint(models.Model):
    """The checkpoints a project currently generates with, each with its share of the seeds."""

    project = models.ForeignKey("engine.Project", on_delete=models.CASCADE, related_name="current_checkpoints")
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="+")
    share = models.FloatField(default=1.0, help_text="Relative share of the N candidates per item.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "checkpoint"], name="project_checkpoint_unique"),
        ]


class Candidate(models.Model):
    """One 3D proposal for one item, from one checkpoint and seed."""

    item = models.ForeignKey("annotation.Item", on_delete=models.CASCADE, related_name="candidates")
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="candidates")
    seed = models.BigIntegerField()
    steps = models.PositiveSmallIntegerField(help_text="Sampling steps used.")
    glb = models.FileField(max_length=300, help_text="Full mesh, glTF 2.0 binary, +Y up, metres.")
    glb_compact = models.FileField(max_length=300, blank=True, help_text="Quantised copy for the browser.")
    preview = models.FileField(max_length=300, blank=True)
    layout = models.JSONField(help_text="rotation (w,x,y,z), translation (m), scale in the camera frame.")
    num_vertices = models.PositiveIntegerField(default=0)
    num_faces = models.PositiveIntegerField(default=0)
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds per stage.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["item", "id"]
        constraints = [
            models.UniqueConstraint(fields=["item", "checkpoint", "seed"], name="candidate_unique_seed"),
        ]

    def __str__(self) -> str:
        return f"candidate {self.pk} of item {self.item_id}"
