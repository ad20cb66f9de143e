"""Real rows for export tests: stored photos and GLBs, items, leases, judgements, comparisons."""
from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from annotation.models import ArtistMesh, Comparison, Item, ItemState, Judgement, Lease
from engine import masks as mask_codec
from engine.files import sha256_bytes, store_content_addressed
from engine.models import Image, ObjectMask, RankingProtocol
from modelzoo import mesh
from tests.annotation.factories import CandidateFactory, CheckpointFactory, ItemFactory, RoundFactory
from tests.engine.builders import box_mask, photo_bytes

TETRA_F = np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]], dtype=np.uint32)


def glb(seed: int) -> bytes:
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32) * (0.1 + 0.01 * seed)
    return mesh.glb_bytes(v, TETRA_F)


def stored_glb(seed: int, folder: str = "candidates") -> tuple[str, str]:
    data = glb(seed)
    sha = sha256_bytes(data)
    return store_content_addressed(folder=folder, sha256=sha, extension="glb", data=data), sha


class World:
    """Builds items with candidates and judgements in one project."""

    def __init__(self, project, annotators):
        self.project = project
        self.annotators = annotators
        self.ckpt = CheckpointFactory(name="builtin", version="v1")
        self.ckpt2 = CheckpointFactory(name="builtin", version="v2")
        self.n = 0

    def item(self, n_candidates: int, *, round_index: int = 1, gold: bool = False, checkpoints=None) -> tuple:
        self.n += 1
        photo = photo_bytes(seed=self.n)
        sha = sha256_bytes(photo)
        name = store_content_addressed(folder="images", sha256=sha, extension="png", data=photo)
        image = Image.objects.create(project=self.project, file=name, sha256=sha, width=64, height=48,
                                     format="png", source_name=f"photo{self.n}.png")
        rle = mask_codec.encode(box_mask(64, 48))
        mask = ObjectMask.objects.create(image=image, rle_counts=rle, rle_sha256=sha256_bytes(rle.encode()),
                                         bbox=[10, 10, 20, 15], area=300, label="cup")
        rnd = RoundFactory(project=self.project, index=round_index)
        item = ItemFactory(project=self.project, round=rnd, mask=mask, state=ItemState.DONE, is_gold=gold)
        cands = []
        for k in range(n_candidates):
            ck = (checkpoints or [self.ckpt])[k % len(checkpoints or [self.ckpt])]
            glb_name, _ = stored_glb(self.n * 100 + k)
            cands.append(CandidateFactory(item=item, checkpoint=ck, seed=1000 * self.n + k, glb=glb_name))
        if gold:
            item.gold_candidate = cands[0]
            item.save(update_fields=["gold_candidate"])
        return item, [c.pk for c in cands]

    def judge(self, item, *, winner, rating, comparisons=(), ranking=None, annotator=None,
              status=Judgement.Status.ACCEPTED, layout=None):
        annotator = annotator or self.annotators[0]
        protocol = RankingProtocol.FULL_RANKING if ranking else RankingProtocol.KING_OF_THE_HILL
        lease = Lease.objects.create(project=self.project, item=item, annotator=annotator, state=Lease.State.SUBMITTED,
                                     seed=1, order=[], sides=[], protocol=protocol,
                                     expires_at=timezone.now())
        winner_layout = item.candidates.get(pk=winner).layout
        j = Judgement.objects.create(
            project=self.project, item=item, annotator=annotator, lease=lease, key=str(uuid.uuid4()),
            protocol=protocol, ranking=ranking, winner_id=winner, rating=rating,
            below_threshold=rating < item.round.quality_threshold, layout=layout, model_layout=winner_layout,
            status=status)
        for idx, (left, right, outcome) in enumerate(comparisons, start=1):
            Comparison.objects.create(judgement=j, index=idx, left_id=left, right_id=right, outcome=outcome,
                                      decided_ms=900)
        return j

    def artist(self, item, layout=None):
        name, sha = stored_glb(99_000 + item.pk, folder="artist")
        Item.objects.filter(pk=item.pk).update(hard_case=True, state=ItemState.DONE)
        item.refresh_from_db()
        return ArtistMesh.objects.create(item=item, file=name, sha256=sha, size_bytes=default_storage.size(name),
                                         layout=layout)


@pytest.fixture
def world(project, member):
    project.quality_threshold = 3
    project.save(update_fields=["quality_threshold"])
    annotators = [member("annotator"), member("annotator")]
    w = World(project, annotators)
    # A: king of the hill over 4; c3 wins; (c3, c4) equal.
    a, (a1, a2, a3, a4) = w.item(4)
    w.judge(a, winner=a3, rating=4, comparisons=[(a1, a2, "left"), (a1, a3, "right"), (a3, a4, "equal")],
            layout={"rotation": [1, 0, 0, 0], "translation": [0, 0, -3], "scale": [1, 1, 1]})
    # B: winner rated below alpha -> hard case with an artist mesh.
    b, (b1, b2, b3) = w.item(3)
    w.judge(b, winner=b2, rating=2, comparisons=[(b1, b2, "right"), (b2, b3, "left")])
    w.artist(b, layout={"rotation": [1, 0, 0, 0], "translation": [0.1, 0, -2.5], "scale": [1, 1, 1]})
    # C: gold item.
    c, (c1, c2) = w.item(2, gold=True)
    w.judge(c, winner=c1, rating=5, comparisons=[(c1, c2, "left")])
    # D: rejected in review.
    d, (d1, d2) = w.item(2)
    w.judge(d, winner=d2, rating=4, comparisons=[(d1, d2, "right")], status=Judgement.Status.REJECTED)
    # E: full ranking in round 2, two checkpoints.
    e, (e1, e2, e3, e4) = w.item(4, round_index=2, checkpoints=[w.ckpt, w.ckpt2])
    w.judge(e, winner=e1, rating=3, ranking=[[e1], [e2, e3], [e4]])
    w.ids = {"a": (a.pk, [a1, a2, a3, a4]), "b": (b.pk, [b1, b2, b3]), "c": (c.pk, [c1, c2]),
             "d": (d.pk, [d1, d2]), "e": (e.pk, [e1, e2, e3, e4])}
    return w


@pytest.fixture
def trainer(member):
    return member("trainer")


def download(snapshot, folder: Path) -> Path:
    """Copy a built snapshot's files to `folder` with their dataset paths."""
    for entry in snapshot.manifest["files"]:
        target = folder / entry["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        with default_storage.open(entry["storage_name"], "rb") as handle:
            target.write_bytes(handle.read())
    return folder
