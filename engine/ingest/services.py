"""The one write path for ingest: validate everything of an item, then write it atomically."""
from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from engine.files import sha256_bytes, store_content_addressed
from engine.ingest.validation import (
    IngestRejected,
    ItemInput,
    ValidImage,
    validate_depth,
    validate_image,
    validate_intrinsics,
    validate_mask,
)
from engine.models import Image, ObjectMask, Project

log = logging.getLogger(__name__)


@dataclass
class ItemOutcome:
    image: Image
    created: bool
    masks_created: int
    masks_duplicate: int


@dataclass
class IngestSummary:
    images_imported: int = 0
    images_duplicate: int = 0
    masks_imported: int = 0
    masks_duplicate: int = 0
    rejected: list[dict] = field(default_factory=list)  # [{"name": ..., "reason": ...}]
    # Every entry's outcome in order: {"name", "outcome": added|duplicate|refused, "reason", "image_id",
    # "masks_added", "masks_duplicate"} (an ingest job's report, engine.models.IngestEntry).
    entries: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "images_imported": self.images_imported,
            "images_duplicate": self.images_duplicate,
            "masks_imported": self.masks_imported,
            "masks_duplicate": self.masks_duplicate,
            "rejected": self.rejected,
        }

    def add(self, outcome: ItemOutcome) -> None:
        if outcome.created:
            self.images_imported += 1
        else:
            self.images_duplicate += 1
        self.masks_imported += outcome.masks_created
        self.masks_duplicate += outcome.masks_duplicate


def _thumbnail_bytes(image: ValidImage) -> bytes:
    thumb = image.pil.convert("RGB")
    thumb.thumbnail((settings.THUMBNAIL_SIZE, settings.THUMBNAIL_SIZE))
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def ingest_item(*, project: Project, item: ItemInput) -> ItemOutcome:
    """Validate one image with its masks (and depth), then write all of it or nothing.

    Idempotent: an image already in the project (same bytes) is not stored again, and
    masks already on it (same pixels) are skipped; new masks on a known image are added.
    Raises IngestRejected, naming the file and the reason, when anything is invalid.
    """
    image = validate_image(item.image_bytes, item.name)
    if not item.masks:
        raise IngestRejected(f"{item.name}: no object masks were given for this image.")
    masks = [validate_mask(m, image.width, image.height, item.name) for m in item.masks]
    depth = (
        validate_depth(item.depth_bytes, item.depth_name or item.name, image.width, image.height)
        if item.depth_bytes
        else None
    )
    intrinsics = validate_intrinsics(item.intrinsics, item.name)
    seen: set[str] = set()
    unique_masks = []
    for m in masks:
        if m.rle_sha256 not in seen:
            seen.add(m.rle_sha256)
            unique_masks.append(m)
    duplicates_in_input = len(masks) - len(unique_masks)

    file_name = store_content_addressed(
        folder="images", sha256=image.sha256, extension=image.extension, data=image.data
    )
    thumb_name = store_content_addressed(
        folder="thumbs", sha256=image.sha256, extension="jpg", data=_thumbnail_bytes(image)
    )
    depth_name = ""
    if depth is not None:
        buf = io.BytesIO()
        np.save(buf, depth, allow_pickle=False)
        depth_bytes = buf.getvalue()
        depth_name = store_content_addressed(
            folder="depth", sha256=sha256_bytes(depth_bytes), extension="npy", data=depth_bytes
        )

    with transaction.atomic():
        created = False
        row = Image.objects.select_for_update().filter(project=project, sha256=image.sha256).first()
        if row is None:
            try:
                with transaction.atomic():
                    row = Image.objects.create(
                        project=project,
                        file=file_name,
                        sha256=image.sha256,
                        width=image.width,
                        height=image.height,
                        format=image.extension,
                        thumbnail=thumb_name,
                        depth=depth_name,
                        intrinsics=intrinsics,
                        source_name=item.name[:500],
                        source=item.source,
                    )
                    created = True
            except IntegrityError:  # a concurrent import of the same bytes won
                row = Image.objects.select_for_update().get(project=project, sha256=image.sha256)
        elif depth_name and not row.depth:
            row.depth = depth_name
            row.save(update_fields=["depth"])

        existing = set(ObjectMask.objects.filter(image=row).values_list("rle_sha256", flat=True)) if not created else ()
        new_masks = [m for m in unique_masks if m.rle_sha256 not in existing]
        _masks_create(image=row, masks=new_masks)
    return ItemOutcome(
        image=row,
        created=created,
        masks_created=len(new_masks),
        masks_duplicate=len(unique_masks) - len(new_masks) + duplicates_in_input,
    )


_MASK_COLUMNS = ("image_id", "rle_counts", "rle_sha256", "bbox", "area", "label", "provenance", "created_at")


def _masks_create(*, image: Image, masks: list) -> None:
    """Insert an image's new masks (ValidMasks): a hundred rows of a kilobyte of RLE each for an
    SA-1B photo. On PostgreSQL by COPY (bulk_create's UNNEST escapes every string of its arrays
    in Python: a third of a photo's ingest); elsewhere by bulk_create. Both run in the caller's
    transaction, and the unique constraint (image, rle_sha256) still guards them."""
    if not masks:
        return
    if connection.vendor != "postgresql":
        ObjectMask.objects.bulk_create([
            ObjectMask(image=image, rle_counts=m.rle_counts, rle_sha256=m.rle_sha256, bbox=m.bbox, area=m.area,
                       label=m.label, provenance=m.provenance)
            for m in masks
        ])
        return
    now = timezone.now()
    columns = ", ".join(_MASK_COLUMNS)
    with connection.cursor() as cur, cur.cursor.copy(
        f"COPY {ObjectMask._meta.db_table} ({columns}) FROM STDIN"
    ) as copy:
        for m in masks:
            copy.write_row((image.pk, m.rle_counts, m.rle_sha256, json.dumps(m.bbox), m.area, m.label,
                            json.dumps(m.provenance), now))


def ingest_items(
    *,
    project: Project,
    items: Iterable[ItemInput | IngestRejected],
    on_progress: Callable[[str], None] | None = None,
) -> IngestSummary:
    """Ingest many items; a bad one is listed in the summary and does not stop the rest."""
    summary = IngestSummary()
    for entry in items:
        if isinstance(entry, IngestRejected):
            refused = {"name": str(entry).split(":", 1)[0], "reason": str(entry)}
        else:
            try:
                outcome = ingest_item(project=project, item=entry)
            except IngestRejected as exc:
                refused = {"name": entry.name, "reason": str(exc)}
            else:
                refused = None
                summary.add(outcome)
                summary.entries.append({
                    "name": entry.name, "reason": "", "image_id": outcome.image.pk,
                    "outcome": "added" if outcome.created or outcome.masks_created else "duplicate",
                    "masks_added": outcome.masks_created, "masks_duplicate": outcome.masks_duplicate})
        if refused is not None:
            summary.rejected.append(refused)
            summary.entries.append(refused | {"outcome": "refused", "image_id": None, "masks_added": 0,
                                              "masks_duplicate": 0})
        if on_progress:
            on_progress(getattr(entry, "name", ""))
    return summary
