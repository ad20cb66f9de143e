"""Items (one object mask in one round, with its candidates) and what annotators do with them."""
from django.db import models
from django.utils import timezone


class ItemState(models.TextChoices):
    WAITING = "waiting", "Waiting for candidates"
    READY = "ready", "Ready"
    IN_PROGRESS = "in_progress", "In progress"
    DONE = "done", "Done"
    HARD_CASE = "hard_case", "Hard case (artist queue)"
    SKIPPED = "skipped", "Skipped"
    FLAGGED = "flagged", "Flagged"
    FAILED = "failed", "Generation failed"


class Item(models.Model):
    """The unit of annotation. Its `state` moves only through `annotation.states.item_transition`."""

    project = models.ForeignKey("engine.Project", on_delete=models.CASCADE, related_name="items")
    round = models.ForeignKey("engine.Round", on_delete=models.CASCADE, related_name="items")
    mask = models.ForeignKey("engine.ObjectMask", on_delete=models.CASCADE, related_name="items")
    state = models.CharField(max_length=16, choices=ItemState.choices, default=ItemState.WAITING)
    state_reason = models.TextField(blank=True, help_text="Why the item is in its state (failure, flag, skip).")
    is_gold = models.BooleanField(default=False, help_text="A gold item: its best candidate is known.")
    gold_candidate = models.ForeignKey(
        "modelzoo.Candidate", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    judgements_done = models.PositiveIntegerField(default=0, help_text="Accepted judgements so far (overlap).")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["round", "mask"], name="item_unique_round_mask")]
        indexes = [models.Index(fields=["project", "state", "judgements_done", "id"], name="item_queue_idx")]

    def __str__(self) -> str:
        return f"item {self.pk} ({self.state})"
