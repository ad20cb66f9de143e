"""Items (one object mask in one round, with its candidates) and what annotators do with them.

No business logic here: writes go through `annotation.services`, reads through
`annotation.selectors`; `Item.state` moves only through `annotation.states.item_transition`.

Counters on Item (`judgements_done`, `claims`) are changed only by services that hold the
item's row lock, so they stay exact under many annotators at once.
"""
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from engine.models import RATING_MAX, RATING_MIN


class ItemState(models.TextChoices):
    WAITING = "waiting", "Waiting for candidates"
    READY = "ready", "Ready"
    IN_PROGRESS = "in_progress", "In progress"
    DONE = "done", "Done"
    HARD_CASE = "hard_case", "Hard case (artist queue)"
    SKIPPED = "skipped", "Skipped"
    FLAGGED = "flagged", "Flagged"
    FAILED = "failed", "Generation failed"


# States in which an item can be offered to annotators (the lease queue).
QUEUE_STATES = [ItemState.READY, ItemState.IN_PROGRESS]
# The workbench holds the item on screen and prefetches the next one: two active leases per
# annotator and project, no more.
MAX_ACTIVE_LEASES = 2


class Item(models.Model):
    """The unit of annotation. Its `state` moves only through `annotation.states.item_transition`."""

    # db_index=False here and on the foreign keys so marked below: another index of the table leads
    # with the column already, and every index is one more write per lease, judgement and comparison.
    project = models.ForeignKey("engine.Project", on_delete=models.CASCADE, related_name="items", db_index=False)
    round = models.ForeignKey("engine.Round", on_delete=models.CASCADE, related_name="items", db_index=False)
    mask = models.ForeignKey("engine.ObjectMask", on_delete=models.CASCADE, related_name="items")
    state = models.CharField(max_length=16, choices=ItemState.choices, default=ItemState.WAITING)
    state_reason = models.TextField(blank=True, help_text="Why the item is in its state (failure, flag, skip).")
    is_gold = models.BooleanField(default=False, help_text="A gold item: its best candidate is known.")
    gold_candidate = models.ForeignKey(
        "modelzoo.Candidate", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    judgements_done = models.PositiveIntegerField(default=0, help_text="Accepted judgements so far (overlap).")
    claims = models.PositiveIntegerField(
        default=0,
        help_text="Accepted judgements plus active leases: the item is offered while claims < overlap k "
        "(gold items: to every annotator once).",
    )
    skips = models.PositiveIntegerField(default=0, help_text="Annotators who skipped this item.")
    hard_case = models.BooleanField(
        default=False,
        help_text="Its winner was rated below alpha: candidates are only negatives; an artist mesh is wanted.",
    )
    recovers = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="recovery",
        help_text="Hard-case recovery: the hard case whose object this item judges again on more seeds, ranked "
                  "(engine.rounds.recovery). Its winner rated at least alpha recovers that item.")
    selection_key = models.FloatField(
        null=True, blank=True,
        help_text="Active selection (Project.item_selection 'uncertain'): the ranker's score margin between the "
                  "item's two best shown candidates; the queue offers smaller margins first, then items without one.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        # One item per object and round, besides at most one recovery item of a hard case.
        constraints = [models.UniqueConstraint(fields=["round", "mask"], condition=Q(recovers__isnull=True),
                                               name="item_unique_round_mask")]
        indexes = [
            models.Index(fields=["project", "state", "judgements_done", "id"], name="item_queue_idx"),
            # The lease query: project, gold or not, closest to completing its overlap first, then the
            # least sure under active selection (NULL, last, everywhere else), then the oldest.
            models.Index(
                fields=["project", "is_gold", "-claims", "selection_key", "id"],
                condition=Q(state__in=["ready", "in_progress"]),
                name="item_lease_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"item {self.pk} ({self.state})"


class Lease(models.Model):
    """One item offered to one annotator, with the randomised order they see.

    At most one lease per (item, annotator), ever: that is what guarantees an item is never
    offered twice to the same annotator.
    """

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        SUBMITTED = "submitted", "Judgement submitted"
        SKIPPED = "skipped", "Skipped"
        FLAGGED = "flagged", "Flagged"
        RELEASED = "released", "Released by the annotator"
        EXPIRED = "expired", "Expired"

    project = models.ForeignKey("engine.Project", on_delete=models.CASCADE, related_name="+")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="leases", db_index=False)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="leases",
                                  db_index=False)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    seed = models.BigIntegerField(help_text="Seed of the random candidate order and sides (replayable).")
    order = models.JSONField(help_text="Candidate ids in this annotator's tournament order.")
    sides = models.JSONField(help_text="sides[k-1] true: the king is on the left in comparison k.")
    protocol = models.CharField(max_length=32, help_text="Ranking protocol in force when leased.")
    layout_stage = models.BooleanField(default=False, help_text="Layout stage in force when leased.")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["item", "annotator"], name="lease_unique_item_annotator")]
        indexes = [
            models.Index(fields=["project", "expires_at"], condition=Q(state="active"), name="lease_active_idx"),
            models.Index(fields=["annotator", "project", "state"], name="lease_annotator_idx"),
        ]

    def __str__(self) -> str:
        return f"lease {self.pk} of item {self.item_id} ({self.state})"


class Judgement(models.Model):
    """One annotator's whole judgement of one item. Append-only: a correction is a new row
    that supersedes the old one; review changes only `status`."""

    class Status(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected by review (left out of exports)"
        SUPERSEDED = "superseded", "Superseded by a correction (left out of exports)"

    project = models.ForeignKey("engine.Project", on_delete=models.CASCADE, related_name="+", db_index=False)
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="judgements", db_index=False)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="judgements",
                                  db_index=False)
    lease = models.ForeignKey(Lease, on_delete=models.PROTECT, related_name="judgements")
    key = models.CharField(max_length=64, help_text="Client-generated idempotency key, unique per annotator.")
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by"
    )
    protocol = models.CharField(max_length=32)
    ranking = models.JSONField(null=True, blank=True, help_text="Full ranking: groups of ids, best first; ties share a group.")
    winner = models.ForeignKey("modelzoo.Candidate", on_delete=models.PROTECT, related_name="+")
    rating = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(RATING_MIN), MaxValueValidator(RATING_MAX)],
        help_text="Quality of the winner: 1 unusable, 2 poor, 3 acceptable, 4 good, 5 excellent.",
    )
    below_threshold = models.BooleanField(default=False, help_text="rating < alpha of the item's round.")
    layout = models.JSONField(null=True, blank=True, help_text="Layout adjusted by the annotator (layout stage).")
    model_layout = models.JSONField(null=True, blank=True, help_text="The winner's layout as the model proposed it.")
    time_spent_ms = models.PositiveIntegerField(default=0)
    gold_correct = models.BooleanField(null=True, blank=True, help_text="On a gold item: winner == gold answer.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACCEPTED)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        db_index=False,  # judgement_reviewed_idx, partial: most judgements are never reviewed
    )
    review_reason = models.TextField(blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["annotator", "key"], name="judgement_unique_key"),
            # One original judgement per lease; corrections chain through `supersedes`.
            models.UniqueConstraint(fields=["lease"], condition=Q(supersedes__isnull=True),
                                    name="judgement_unique_lease"),
        ]
        indexes = [
            models.Index(fields=["project", "annotator", "created_at"], name="judgement_annotator_idx"),
            models.Index(fields=["item", "status"], name="judgement_item_idx"),
            models.Index(fields=["project", "status", "created_at"], name="judgement_review_idx"),
            models.Index(fields=["reviewed_by"], condition=Q(reviewed_by__isnull=False), name="judgement_reviewed_idx"),
        ]

    def __str__(self) -> str:
        return f"judgement {self.pk} of item {self.item_id} ({self.status})"


class Comparison(models.Model):
    """One pairwise comparison of a king-of-the-hill run, in the order it was made."""

    class Outcome(models.TextChoices):
        LEFT = "left", "Left better"
        RIGHT = "right", "Right better"
        EQUAL = "equal", "Equal"

    judgement = models.ForeignKey(Judgement, on_delete=models.CASCADE, related_name="comparisons", db_index=False)
    index = models.PositiveSmallIntegerField(help_text="1 for the first comparison of the run.")
    left = models.ForeignKey("modelzoo.Candidate", on_delete=models.PROTECT, related_name="+")
    right = models.ForeignKey("modelzoo.Candidate", on_delete=models.PROTECT, related_name="+")
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    decided_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Time to decide, milliseconds.")

    class Meta:
        ordering = ["judgement", "index"]
        constraints = [models.UniqueConstraint(fields=["judgement", "index"], name="comparison_unique_index")]

    @property
    def winner_id(self):
        return {"left": self.left_id, "right": self.right_id}.get(self.outcome)


class Skip(models.Model):
    project = models.ForeignKey("engine.Project", on_delete=models.CASCADE, related_name="+")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="skip_records")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    lease = models.OneToOneField(Lease, on_delete=models.CASCADE, related_name="skip")
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)


class Flag(models.Model):
    class Reason(models.TextChoices):
        BAD_MASK = "bad_mask", "Bad mask"
        BAD_PHOTO = "bad_photo", "Bad photo"
        OTHER = "other", "Other"

    project = models.ForeignKey("engine.Project", on_delete=models.CASCADE, related_name="+")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="flags")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    lease = models.OneToOneField(Lease, on_delete=models.CASCADE, related_name="flag")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)


class ArtistMesh(models.Model):
    """A mesh an artist made for a hard case: the positive its candidates lacked."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="artist_meshes")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    file = models.FileField(max_length=300, help_text="Content-addressed: artist/<sha[:2]>/<sha>.glb.")
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveIntegerField()
    note = models.TextField(blank=True)
    # Where the artist placed the mesh in the photo's camera frame (rotation, translation, scale), as
    # the layout stage would: what makes the mesh an SFT target for a model that predicts layouts too.
    layout = models.JSONField(null=True, blank=True)
    time_spent_ms = models.PositiveBigIntegerField(null=True, blank=True,
                                                   help_text="The artist's own account of the time the mesh took.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["item", "sha256"], name="artist_mesh_unique_content")]
