"""Rollups behind the data lead dashboard.

Every figure that would otherwise scan all judgements or comparisons of a project is read from
these small tables. They are derived data: `services.rollups_refresh` (run by the beat task
`stats.rollups_refresh`) recomputes whole UTC days of a project from the source rows, so a
refresh is idempotent and a day can always be rebuilt. Nothing else writes them.

Time histograms (`*_hist`) are sparse {bucket: count} maps on a log scale, bucket
b = floor(ln(ms) / ln(HIST_RATIO)), so a percentile read from them is within 2.5% (see `selectors.hist_percentile`).
"""
from django.conf import settings
from django.db import models


class RollupState(models.Model):
    """How far the rollups of one project are folded in."""

    project = models.OneToOneField("engine.Project", on_delete=models.CASCADE, related_name="+")
    last_judgement_id = models.BigIntegerField(default=0, help_text="Highest judgement id folded in.")
    refreshed_at = models.DateTimeField(null=True, blank=True, help_text="Start of the last refresh.")
    days_rebuilt = models.PositiveIntegerField(default=0, help_text="UTC days rebuilt by the last refresh.")
    duration_ms = models.PositiveIntegerField(default=0, help_text="Wall time of the last refresh.")


class AnnotatorDay(models.Model):
    """One annotator's work in one round of a project on one UTC day."""

    project = models.ForeignKey("engine.Project", on_delete=models.CASCADE, related_name="+")
    round = models.ForeignKey("engine.Round", on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    judgements = models.PositiveIntegerField(default=0, help_text="Judgements made, corrections excluded.")
    accepted = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0, help_text="Rejected by a lead's review.")
    below_threshold = models.PositiveIntegerField(default=0, help_text="Accepted, winner rated below alpha.")
    gold_total = models.PositiveIntegerField(default=0)
    gold_correct = models.PositiveIntegerField(default=0)
    active_hours = models.PositiveSmallIntegerField(default=0, help_text="Clock hours with at least one judgement.")
    item_ms_sum = models.BigIntegerField(default=0)
    item_ms_hist = models.JSONField(default=dict, help_text="Log histogram of time per item (ms).")
    comparisons = models.PositiveIntegerField(default=0)
    comparisons_equal = models.PositiveIntegerField(default=0)
    comparison_ms_count = models.PositiveIntegerField(default=0, help_text="Comparisons with a decision time.")
    comparison_ms_hist = models.JSONField(default=dict, help_text="Log histogram of time per comparison (ms).")
    agree_total = models.PositiveIntegerField(
        default=0, help_text="Pairs (this annotator, another) that judged the same item, counted on the later day."
    )
    agree_winner = models.PositiveIntegerField(default=0, help_text="Of those, pairs that chose the same winner.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "day", "round", "annotator"], name="annotatorday_unique"),
        ]
        indexes = [models.Index(fields=["project", "annotator", "day"], name="annotatorday_annotator_idx")]


class ProjectHour(models.Model):
    """A project's work in one round in one clock hour: the time series and the rates."""

    project = models.ForeignKey("engine.Project", on_delete=models.CASCADE, related_name="+")
    round = models.ForeignKey("engine.Round", on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField(help_text="Start of the UTC hour.")
    judgements = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    below_threshold = models.PositiveIntegerField(default=0)
    comparisons = models.PositiveIntegerField(default=0)
    annotators = models.PositiveIntegerField(default=0, help_text="Distinct annotators in the hour.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "hour", "round"], name="projecthour_unique")]


class CheckpointDay(models.Model):
    """Accepted winners by the checkpoint that generated them: acceptance per checkpoint."""

    project = models.ForeignKey("engine.Project", on_delete=models.CASCADE, related_name="+")
    round = models.ForeignKey("engine.Round", on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    checkpoint = models.ForeignKey("modelzoo.Checkpoint", on_delete=models.CASCADE, related_name="+")
    winners = models.PositiveIntegerField(default=0, help_text="Accepted judgements whose winner it generated.")
    acceptable = models.PositiveIntegerField(default=0, help_text="Of those, winners rated >= alpha.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "day", "round", "checkpoint"], name="checkpointday_unique"),
        ]


class PairDay(models.Model):
    """Comparisons between candidates of two different checkpoints (a < b by id), accepted judgements."""

    project = models.ForeignKey("engine.Project", on_delete=models.CASCADE, related_name="+")
    round = models.ForeignKey("engine.Round", on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    checkpoint_a = models.ForeignKey("modelzoo.Checkpoint", on_delete=models.CASCADE, related_name="+")
    checkpoint_b = models.ForeignKey("modelzoo.Checkpoint", on_delete=models.CASCADE, related_name="+")
    a_wins = models.PositiveIntegerField(default=0)
    ties = models.PositiveIntegerField(default=0)
    b_wins = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "day", "round", "checkpoint_a", "checkpoint_b"],
                                    name="pairday_unique"),
        ]




class WorkerHeartbeat(models.Model):
    """A Celery worker saying it is alive: written every few seconds by a thread in each worker's
    main process (engine.stats.heartbeat), read by the dashboard's health check. A row, not a
    broadcast: the filesystem broker of `make run` answers no broadcast, and a row tells the
    truth on every broker (and survives the web process not sharing a cache with the worker)."""

    name = models.CharField(max_length=255, primary_key=True, help_text="The worker's node name (celery@host).")
    queues = models.JSONField(default=list)
    pid = models.PositiveIntegerField()
    active_tasks = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)
