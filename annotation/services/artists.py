"""Artists' work: a mesh uploaded for a hard case, stored content-addressed; the item is then done."""
from __future__ import annotations

import struct

from django.db import transaction

from annotation.models import ArtistMesh, Item, ItemState
from annotation.services.judgements import _validate_layout
from annotation.states import item_transition
from engine.errors import Conflict, ValidationFailed
from engine.files import sha256_bytes, store_content_addressed

ARTIST_MESH_MAX_BYTES = 200 * 1024 * 1024


def _glb_check(data: bytes) -> None:
    if len(data) < 20 or data[:4] != b"glTF":
        raise ValidationFailed("Not a GLB file: it must start with the 'glTF' magic (glTF 2.0 binary).",
                               code="invalid_glb")
    _, version, length = struct.unpack_from("<4sII", data, 0)
    if version != 2:
        raise ValidationFailed(f"GLB version {version}; only glTF 2.0 is accepted.", code="invalid_glb")
    if length != len(data):
        raise ValidationFailed(f"GLB header says {length} bytes but {len(data)} arrived: truncated upload?",
                               code="invalid_glb")


def artist_mesh_upload(*, item: Item, uploaded_by, data: bytes, note: str = "", layout: dict | None = None,
                       time_spent_ms: int | None = None) -> tuple[ArtistMesh, bool]:
    """Store an artist's GLB for a hard case (content-addressed); the item is then done.

    `layout`: where the mesh sits in the photo's camera frame (as the layout stage records a winner's);
    without one the mesh is a shape only, and the reference trainer leaves it out of SFT."""
    if item.recovers_id:
        raise Conflict(f"Item {item.pk} judged hard case {item.recovers_id} again on more seeds; an artist models "
                       f"item {item.recovers_id}.", code="recovery_item")
    if len(data) > ARTIST_MESH_MAX_BYTES:
        raise ValidationFailed(f"The mesh is larger than {ARTIST_MESH_MAX_BYTES // 2**20} MB.", code="too_large")
    if layout is not None:
        layout = _validate_layout(layout)
    if time_spent_ms is not None and (isinstance(time_spent_ms, bool) or not isinstance(time_spent_ms, int)
                                      or not 0 <= time_spent_ms <= 30 * 24 * 3600 * 1000):
        raise ValidationFailed("time_spent_ms must be a whole number of milliseconds from 0 to 30 days.",
                               code="invalid_time_spent")
    _glb_check(data)
    sha = sha256_bytes(data)
    if not item.hard_case:
        raise Conflict(f"Item {item.pk} is not a hard case; artists model only hard cases.", code="not_hard_case")
    name = store_content_addressed(folder="artist", sha256=sha, extension="glb", data=data)
    with transaction.atomic():
        item = Item.objects.select_for_update(of=("self",)).select_related("project", "round").get(pk=item.pk)
        mesh, created = ArtistMesh.objects.get_or_create(
            item=item, sha256=sha,
            defaults={"uploaded_by": uploaded_by, "file": name, "size_bytes": len(data), "note": note[:2000],
                      "layout": layout, "time_spent_ms": time_spent_ms},
        )
        if item.state == ItemState.HARD_CASE:
            item_transition(item=item, to=ItemState.DONE, reason="artist mesh")
    return mesh, created
