"""The engine's core domain: projects and their members, images, object masks, rounds.

No business logic here: writes go through `engine.services`, reads through `engine.selectors`.
"""
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone


class Role(models.TextChoices):
    ANNOTATOR = "annotator", "Annotator"
    LEAD = "lead", "Lead"
    TRAINER = "trainer", "Trainer"
    ARTIST = "artist", "3D artist"


class ItemSelection(models.TextChoices):
    """Which item the queue offers next, among those equally close to completing their overlap."""

    OLDEST = "oldest", "The oldest first"
    UNCERTAIN = "uncertain", "The ones the ranker is least sure of first (pre-ranked rounds)"


class JudgedRepresentation(models.TextChoices):
    """How annotators see candidates: both sides of a comparison are drawn this way."""

    GEOMETRY = "geometry", "Shaded geometry, untextured"
    TEXTURED = "textured", "The mesh as made (textures or vertex colours)"
    SPLAT = "splat", "Gaussian splat"


class RankingProtocol(models.TextChoices):
    KING_OF_THE_HILL = "king_of_the_hill", "King of the hill (pairwise)"
    FULL_RANKING = "full_ranking", "Full ranking"


# The quality rating an annotator gives the winner: 1 unusable, 2 poor, 3 acceptable,
# 4 good, 5 excellent. A project's threshold alpha is on this scale.
RATING_MIN = 1
RATING_MAX = 5


class WorkerHeld(models.Model):
    """What a row worked on by one Celery task records of its worker (engine.lost_work): when the
    worker last showed it was on it, and how often the row was sent again after its worker was lost."""

    heartbeat_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When a worker took this row's task, or last said it was still on it (long work); "
                  "empty while the task waits in the broker.")
    requeues = models.PositiveSmallIntegerField(
        default=0, help_text="Times the lost-work sweep sent the task again after its worker was lost.")

    class Meta:
        abstract = True


class Project(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True, help_text="Short name used in URLs and the CLI.")
    description = models.TextField(blank=True)
    candidates_per_item = models.PositiveSmallIntegerField(
        default=8,
        validators=[MinValueValidator(2), MaxValueValidator(64)],
        help_text="N: candidates generated per object (best-of-N). SAM 3D used 8.",
    )
    quality_threshold = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(RATING_MIN), MaxValueValidator(RATING_MAX)],
        help_text="Alpha: a winner rated below this (1-5 scale) makes the item a hard case.",
    )
    overlap = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text="k: how many different annotators judge each item.",
    )
    gold_rate = models.FloatField(
        default=0.05,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of offered items that are gold items with a known answer.",
    )
    lease_seconds = models.PositiveIntegerField(
        default=300,
        validators=[MinValueValidator(30), MaxValueValidator(86400)],
        help_text="How long an annotator holds an item before it returns to the queue.",
    )
    ranking_protocol = models.CharField(
        max_length=32, choices=RankingProtocol.choices, default=RankingProtocol.KING_OF_THE_HILL
    )
    layout_stage = models.BooleanField(default=False, help_text="Ask annotators to adjust the winner's layout.")
    judged_representation = models.CharField(
        max_length=16, choices=JudgedRepresentation.choices, default=JudgedRepresentation.TEXTURED,
        db_default=JudgedRepresentation.TEXTURED,
        help_text="What annotators judge: shaded geometry (SAM 3D's geometry stage), the textured mesh, or the "
                  "Gaussian splat. A candidate without that representation is drawn as the one it has.")
    item_selection = models.CharField(
        max_length=16, choices=ItemSelection.choices, default=ItemSelection.OLDEST, db_default=ItemSelection.OLDEST,
        help_text="Active selection: among items equally close to completing their overlap, offer the oldest first, "
                  "or those whose two best pre-ranked candidates the ranker scored closest first.")
    daily_cap = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most judgements one annotator may submit per UTC day; empty for none."
    )
    sampling_steps = models.PositiveSmallIntegerField(
        default=4,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Flow-matching sampling steps used when generating candidates.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """One role of one user in one project; a user may hold several roles."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user", "role"], name="membership_unique_role"),
        ]
        indexes = [models.Index(fields=["user", "project"])]

    def __str__(self) -> str:
        return f"{self.user} {self.role} in {self.project}"


class ApiToken(models.Model):
    """A personal API token. Only its SHA-256 is stored; the key is shown once at creation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. 'training cluster'.")
    prefix = models.CharField(max_length=12, help_text="First characters of the key, to recognise it.")
    key_sha256 = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}...)"


class Image(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="images")
    file = models.FileField(max_length=300, help_text="Content-addressed: images/<sha256>.<ext>.")
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the file's bytes; the dedupe key.")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=8, help_text="jpeg, png or webp.")
    thumbnail = models.FileField(max_length=300, blank=True)
    depth = models.FileField(
        max_length=300, blank=True, help_text="Optional depth map: float32 .npy in metres, 0 where unknown."
    )
    pointmap = models.FileField(
        max_length=300, blank=True, help_text="Optional point map: float32 .npy, H x W x 3, camera frame, metres."
    )
    intrinsics = models.JSONField(
        null=True, blank=True, help_text="Optional 3x3 pinhole matrix in pixels; None means the default camera."
    )
    source_name = models.CharField(max_length=500, help_text="File name in the import, for people.")
    source = models.JSONField(default=dict, blank=True, help_text="Import format, source ids, licence, etc.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["project", "sha256"], name="image_unique_content")]

    def __str__(self) -> str:
        return self.source_name


class ObjectMask(models.Model):
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="masks")
    rle_counts = models.TextField(help_text="COCO compressed RLE (column-major) of the binary mask.")
    rle_sha256 = models.CharField(max_length=64, help_text="SHA-256 of rle_counts; masks dedupe on it per image.")
    bbox = models.JSONField(help_text="[x, y, width, height] in pixels, COCO convention.")
    area = models.PositiveIntegerField(help_text="Pixels in the mask.")
    label = models.CharField(max_length=200, blank=True)
    provenance = models.JSONField(
        default=dict, blank=True, help_text="Where the mask came from: format, source id, predicted_iou, ..."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["image", "rle_sha256"], name="mask_unique_content")]

    def __str__(self) -> str:
        return f"{self.label or 'object'} #{self.pk} of {self.image_id}"

    @property
    def size(self) -> tuple[int, int]:
        return (self.image.height, self.image.width)


class Round(models.Model):
    """One turn of the loop in a project: generate, rank, export, train."""

    class State(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rounds")
    index = models.PositiveIntegerField(help_text="1 for the first round of a project.")
    state = models.CharField(max_length=8, choices=State.choices, default=State.OPEN)
    quality_threshold = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(RATING_MIN), MaxValueValidator(RATING_MAX)],
        help_text="Alpha in force for this round (leads raise it from round to round).",
    )
    opened_at = models.DateTimeField(default=timezone.now, help_text="Start of the round.")
    closed_at = models.DateTimeField(null=True, blank=True, help_text="End of the round (its snapshots are cut).")
    mix = models.JSONField(
        default=list, blank=True,
        help_text="The checkpoints that generate in this round with their shares: [{checkpoint, share}].",
    )
    sft_snapshot = models.ForeignKey(
        "exports.Snapshot", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="SFT snapshot exported when the round closed.",
    )
    dpo_snapshot = models.ForeignKey(
        "exports.Snapshot", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="DPO snapshot exported when the round closed.",
    )
    checkpoint_produced = models.ForeignKey(
        "modelzoo.Checkpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The checkpoint trained on this round's snapshots; it generates in the next round.",
    )

    class Meta:
        ordering = ["project", "index"]
        constraints = [models.UniqueConstraint(fields=["project", "index"], name="round_unique_index")]

    def __str__(self) -> str:
        return f"{self.project.slug} round {self.index}"


class TrainingRun(WorkerHeld):
    """One run of the reference trainer (SFT, DPO or both) on snapshots; progress lives here.

    `state` moves only through `engine.rounds.train.training_run_transition`.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    round = models.ForeignKey(Round, null=True, blank=True, on_delete=models.SET_NULL, related_name="training_runs",
                              help_text="The round whose snapshots it trains on, when there is one.")
    stage = models.CharField(max_length=8, help_text="sft, dpo or both.")
    sft_snapshot = models.ForeignKey("exports.Snapshot", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    dpo_snapshot = models.ForeignKey("exports.Snapshot", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    parent = models.ForeignKey("modelzoo.Checkpoint", on_delete=models.PROTECT, related_name="+",
                               help_text="The checkpoint training starts from.")
    hyperparameters = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    progress = models.JSONField(default=dict, blank=True, help_text="{stage, step, steps, fraction}.")
    checkpoint = models.ForeignKey("modelzoo.Checkpoint", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", help_text="The registered result.")
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"training run {self.pk} ({self.stage}, {self.state})"


class IngestJob(WorkerHeld):
    """An import run on workers (`manage.py ingest --queue`): its files cut into batches, one
    Celery task each. Progress is the sum of its batches; a job resumes by running the batches
    still waiting (engine.ingest.jobs)."""

    class State(models.TextChoices):
        PREPARING = "preparing", "Preparing"  # an upload being unpacked and read by a worker (ingest.prepare)
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"  # a batch failed beyond its retries (the others still ran), or the source

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="ingest_jobs")
    format = models.CharField(max_length=8, blank=True, help_text="folder, coco or sa1b ('' while preparing).")
    path = models.CharField(max_length=1000, help_text="The source as the workers see it (folder or COCO JSON).")
    images_dir = models.CharField(max_length=1000, blank=True, help_text="COCO: the folder file_names are in.")
    state = models.CharField(max_length=9, choices=State.choices, default=State.RUNNING)
    total = models.PositiveIntegerField(
        default=0, help_text="Entries in the source (images, and stray masks or annotations); 0 while preparing.")
    upload = models.OneToOneField("Upload", null=True, blank=True, on_delete=models.SET_NULL, related_name="job",
                                  help_text="The browser's or the API's upload this job imports, if any.")
    source_name = models.CharField(max_length=500, blank=True, help_text="What was uploaded, as its owner named it.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    error = models.TextField(blank=True, help_text="Why the source as a whole could not be imported.")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"ingest job {self.pk} ({self.format} {self.path}, {self.state})"


class IngestBatch(WorkerHeld):
    """A slice of an ingest job's entries, ingested by one task in one transaction: all of its
    rows or none, so a worker killed mid-batch leaves nothing and the redelivered task redoes it."""

    class State(models.TextChoices):
        WAITING = "waiting", "Waiting"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    job = models.ForeignKey(IngestJob, on_delete=models.CASCADE, related_name="batches")
    index = models.PositiveIntegerField()
    names = models.JSONField(help_text="The entries' names in the source (readers.Source.names).")
    size = models.PositiveIntegerField(help_text="How many names.")
    state = models.CharField(max_length=8, choices=State.choices, default=State.WAITING)
    images_imported = models.PositiveIntegerField(default=0)
    images_duplicate = models.PositiveIntegerField(default=0)
    masks_imported = models.PositiveIntegerField(default=0)
    masks_duplicate = models.PositiveIntegerField(default=0)
    rejected = models.JSONField(default=list, blank=True, help_text="[{name, reason}] of the entries refused.")
    error = models.TextField(blank=True, help_text="Why the batch failed (not an entry's rejection).")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="ingest_batch_unique_index")]
        indexes = [
            models.Index(fields=["job", "state"], name="ingest_batch_job_state"),
            # The lost-work sweep's look-up: only the batches a worker is on are in it.
            models.Index(fields=["heartbeat_at"], name="ingest_batch_taken_idx",
                         condition=models.Q(state="waiting", heartbeat_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"batch {self.index} of ingest job {self.job_id} ({self.state})"


class IngestEntry(models.Model):
    """One entry of an ingest job's report: a photo (with its masks), or a file refused, and why.
    Written by its batch in the batch's transaction, so a batch done twice reports once."""

    class Outcome(models.TextChoices):
        ADDED = "added", "Added"  # a new photo, or new masks on a photo already there
        DUPLICATE = "duplicate", "Duplicate"  # nothing new: the photo and all its masks were there
        REFUSED = "refused", "Refused"

    job = models.ForeignKey(IngestJob, on_delete=models.CASCADE, related_name="entries")
    batch = models.ForeignKey(IngestBatch, on_delete=models.CASCADE, related_name="entries")
    name = models.CharField(max_length=1000, help_text="The entry's name in the source.")
    outcome = models.CharField(max_length=9, choices=Outcome.choices)
    reason = models.TextField(blank=True, help_text="Why it was refused.")
    image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    masks_added = models.PositiveIntegerField(default=0)
    masks_duplicate = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["job", "outcome", "id"], name="ingest_entry_job_outcome")]


class Upload(models.Model):
    """Files on their way in, in chunks (resumable: each chunk names its offset), staged in
    settings.INGEST_UPLOAD_DIR/<id>/ where the workers read them. Completing it starts an
    IngestJob (engine.ingest.uploads)."""

    class State(models.TextChoices):
        RECEIVING = "receiving", "Receiving"
        COMPLETE = "complete", "Complete"  # handed to an ingest job
        CANCELLED = "cancelled", "Cancelled"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="uploads")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    format = models.CharField(max_length=8, default="auto", help_text="auto, folder, coco or sa1b.")
    state = models.CharField(max_length=9, choices=State.choices, default=State.RECEIVING)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]


class UploadFile(models.Model):
    """One file of an upload: its path in the upload (a folder's layout, or a zip's name), its
    size, and how many of its bytes arrived (a chunk is taken only at exactly this offset)."""

    upload = models.ForeignKey(Upload, on_delete=models.CASCADE, related_name="files")
    index = models.PositiveIntegerField()
    path = models.CharField(max_length=1000)
    size = models.BigIntegerField()
    received = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["upload", "index"]
        constraints = [models.UniqueConstraint(fields=["upload", "index"], name="upload_file_unique_index"),
                       models.UniqueConstraint(fields=["upload", "path"], name="upload_file_unique_path")]
