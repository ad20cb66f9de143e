"""Django glue of the model zoo: the checkpoint registry, generation jobs, candidates."""
from django.conf import settings
from django.db import models
from django.utils import timezone

from engine.models import WorkerHeld


class Checkpoint(models.Model):
    """A model version with its lineage: a generator (proposes candidates) or a ranker (scores them)."""

    class Role(models.TextChoices):
        GENERATOR = "generator", "Generator"
        RANKER = "ranker", "Ranker"

    name = models.CharField(max_length=100, help_text="Model family, e.g. 'builtin'.")
    role = models.CharField(
        max_length=16, choices=Role.choices, default=Role.GENERATOR,
        help_text="generator: proposes candidates and may be in a mix; ranker: a reward model "
                  "(modelzoo.ranker) learnt from a DPO snapshot, scoring candidates; never in a mix.")
    version = models.CharField(max_length=50)
    backend = models.CharField(max_length=50, help_text="Generator backend that runs it: builtin, http, ...")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    file = models.FileField(max_length=300, blank=True, help_text="Weights in storage (content-addressed).")
    sha256 = models.CharField(max_length=64, blank=True)
    config = models.JSONField(default=dict, blank=True, help_text="Backend options, e.g. the server URL.")
    recipe = models.JSONField(default=dict, blank=True, help_text="How it was trained: command, data, seeds.")
    evaluation = models.JSONField(default=dict, blank=True, help_text="Offline metrics on the gold set.")
    lineage = models.JSONField(default=dict, blank=True, help_text="Snapshot ids and rounds it was trained from.")
    public = models.BooleanField(
        default=False,
        help_text="Visible to and usable by every project (the committed bootstrap). Any other checkpoint is "
                  "visible to the projects that generate with it, trained it or trained from it, and those it "
                  "was shared with (CheckpointShare); modelzoo.selectors decides.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="checkpoint_unique_version")]

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"


class CheckpointShare(models.Model):
    """A project that may see a checkpoint (its record: lineage, evaluation) and put it in its mix.

    Made when a checkpoint is registered for a project, when a project's mix takes it (so it stays
    usable after the mix moves on), and by a lead who shares a checkpoint they see with a project
    they lead (`modelzoo.services.checkpoint_share`).
    """

    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.CASCADE, related_name="shares")
    project = models.ForeignKey("engine.Project", on_delete=models.CASCADE, related_name="checkpoint_shares")
    shared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The lead who shared it, or the uploader; empty when a mix or the system made the share.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["checkpoint", "id"]
        constraints = [
            models.UniqueConstraint(fields=["checkpoint", "project"], name="checkpoint_share_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.checkpoint_id} shared with {self.project_id}"


class ProjectCheckpoint(models.Model):
    """The checkpoints a project currently generates with, each with its share of the seeds."""

    project = models.ForeignKey("engine.Project", on_delete=models.CASCADE, related_name="current_checkpoints")
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="+")
    share = models.FloatField(default=1.0, help_text="Relative share of the N candidates per item.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "checkpoint"], name="project_checkpoint_unique"),
        ]


class Selection(models.TextChoices):
    ALL = "all", "Shown: no pre-ranking"
    TOP = "top", "Shown: the ranker's top N"
    RANDOM = "random", "Shown: drawn at random from the rest"


class Candidate(models.Model):
    """One 3D proposal for one item, from one checkpoint and seed (one that annotators are shown: with
    pre-ranking, the M - N others are recorded by seed, score and rank on `GenerationJobItem.ranking`)."""

    item = models.ForeignKey("annotation.Item", on_delete=models.CASCADE, related_name="candidates")
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="candidates")
    seed = models.BigIntegerField()
    steps = models.PositiveSmallIntegerField(help_text="Sampling steps used.")
    glb = models.FileField(max_length=300, blank=True,
                           help_text="Full mesh, glTF 2.0 binary, +Y up, metres, centred; empty for a splat-only "
                                     "candidate.")
    glb_compact = models.FileField(max_length=300, blank=True,
                                   help_text="Browser copy: quantised geometry, textures as WebP of at most 1024 px.")
    # db_default on the new columns: rows written without them (COPY in the benches, older code during a
    # rolling deploy) get the same values as through the ORM.
    splat = models.FileField(max_length=300, blank=True, db_default="",
                             help_text="3D Gaussian splat as the 3DGS PLY (object frame: +Y up, metres, centred); "
                                       "empty when the backend made none.")
    splat_compact = models.FileField(max_length=300, blank=True, db_default="",
                                     help_text="Browser copy of the splat (SPZ).")
    num_gaussians = models.PositiveIntegerField(default=0, db_default=0)
    textured = models.BooleanField(default=False, db_default=False,
                                   help_text="The mesh has UV textures (a PBR material).")
    received = models.JSONField(default=dict, db_default={}, blank=True, help_text=(
        "What the backend handed over: per representation its kind, source format, byte size, counts, "
        "texture sizes, and how the frame was normalised."))
    preview = models.FileField(max_length=300, blank=True)
    layout = models.JSONField(help_text="rotation (w,x,y,z), translation (m), scale in the camera frame.")
    num_vertices = models.PositiveIntegerField(default=0)
    num_faces = models.PositiveIntegerField(default=0)
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds per stage.")
    selection = models.CharField(
        max_length=8, choices=Selection.choices, default=Selection.ALL, db_default=Selection.ALL,
        help_text="Why annotators see it: all (no pre-ranking), top (the ranker's top N of the M generated), "
                  "random (drawn from the rest, so that the ranker's bias stays measurable).")
    ranker_score = models.FloatField(null=True, blank=True, help_text="The pre-ranking ranker's score.")
    ranker_rank = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="1 = the ranker's best of the M candidates generated for the item.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["item", "id"]
        constraints = [
            models.UniqueConstraint(fields=["item", "checkpoint", "seed"], name="candidate_unique_seed"),
            models.CheckConstraint(condition=~(models.Q(glb="") & models.Q(splat="")),
                                   name="candidate_has_mesh_or_splat"),
        ]

    def __str__(self) -> str:
        return f"candidate {self.pk} of item {self.item_id}"


class GenerationJob(models.Model):
    """A lead's request to generate candidates for a set of object masks in the current round.

    Progress lives here and on its `GenerationJobItem` rows (never in Celery results).
    """

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        FINISHED = "finished", "Finished"

    project = models.ForeignKey("engine.Project", on_delete=models.CASCADE, related_name="generation_jobs")
    round = models.ForeignKey("engine.Round", on_delete=models.CASCADE, related_name="generation_jobs")
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    steps = models.PositiveSmallIntegerField(help_text="Sampling steps for every candidate of the job.")
    candidates_per_item = models.PositiveSmallIntegerField(help_text="N: candidates per item.")
    mix = models.JSONField(default=list, blank=True,
                           help_text="The checkpoint mix in force at the start: [{checkpoint, share}].")
    pre_rank = models.JSONField(
        default=dict, blank=True,
        help_text="Pre-ranking, or {}: {ranker: checkpoint id, generate: M, shown: N, random: R}: M candidates "
                  "per item, annotators see the ranker's top N and R drawn from the rest.")
    total_items = models.PositiveIntegerField(default=0)
    total_candidates = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["project", "-started_at"], name="genjob_project_idx")]

    def __str__(self) -> str:
        return f"generation job {self.pk} ({self.project_id}, {self.state})"


class GenerationJobItem(WorkerHeld):
    """One item of a job: the (checkpoint, seed) pairs to produce for it, and how far it got.

    The Celery task `modelzoo.generate_item` takes this row's id.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        SUPERSEDED = "superseded", "Taken over by a later job"

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="job_items")
    item = models.ForeignKey("annotation.Item", on_delete=models.CASCADE, related_name="generation_job_items")
    plan = models.JSONField(help_text="[[checkpoint_id, seed], ...]: the candidates this item needs.")
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    done = models.PositiveSmallIntegerField(default=0, help_text="Planned candidates that exist.")
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Why generation failed, when it did.")
    ranking = models.JSONField(
        default=list, blank=True,
        help_text="With pre-ranking: every generated candidate, best first: [{checkpoint, seed, score, rank, "
                  "shown}] (shown: top, random or null); `plan` then lists the shown ones.")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job", "id"]
        constraints = [models.UniqueConstraint(fields=["job", "item"], name="genjobitem_unique_item")]
        indexes = [
            models.Index(fields=["job", "state"], name="genjobitem_state_idx"),
            # The lost-work sweep's look-up: only the items a worker is on are in it.
            models.Index(fields=["heartbeat_at"], name="genjobitem_taken_idx",
                         condition=models.Q(state="pending", heartbeat_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} item {self.item_id} ({self.state})"
