"""The data of the topology tests, and what they check afterwards. Run inside the deployment's
environment by `Topology.python("tests.topology_world", COMMAND, ...)` (Django set up against the
topology's PostgreSQL and S3 bucket); each command prints one JSON line.

    seed --annotators 32 --items 300 --generate 6 --lease-seconds 20
    generate --masks 1 2 3            a generation job on queue "model" (2 candidates, 2 steps)
    snapshot                          define a DPO snapshot of what is judged and queue its build
    snapshot-rebuild --definition F   in a restored database: define the same again, build inline
    check [--acked FILE]              counts: judgements, items, leases, candidates, snapshots

`Annotator` is the HTTP client of the soak (no Django: the test process imports it).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid

import requests

SLUG = "soak"


# ------------------------------------------------------------------ the HTTP client
class Annotator:
    """A simulated annotator over HTTP with a token, as engine.rounds.simulation's but without the
    mesh scoring (random verdicts): next item, a king-of-the-hill run, a submission.

    Faults are expected: a connection refused or reset, a 5xx (a killed worker, the database
    restarting), a 429. Each request is retried with exponential backoff and jitter; a submission
    is retried with the same idempotency key, so a retry after a lost answer stores nothing twice.
    A 409 on a submission (the lease expired while the server was down) drops that item: another
    annotator gets it. Everything seen is counted in `seen`.
    """

    def __init__(self, base: str, token: str, *, slug: str = SLUG, seed: int = 0, think_s: float = 0.05,
                 retry_for_s: float = 90.0):
        from annotation.king_of_the_hill import run_build  # plain Python, no Django

        self.run_build = run_build
        self.base, self.slug, self.think_s, self.retry_for_s = base.rstrip("/"), slug, think_s, retry_for_s
        self.rng = random.Random(seed)
        self.s = requests.Session()
        self.s.headers["Authorization"] = f"Token {token}"
        self.seen: dict[str, int] = {}
        self.acked: list[int] = []  # judgement ids the server confirmed (201, or 200 for a replay)
        self.finished = False

    def _count(self, what: str) -> None:
        self.seen[what] = self.seen.get(what, 0) + 1

    def request(self, method: str, path: str, **kwargs) -> requests.Response | None:
        """The answer, retried through faults; None when the server stayed away for retry_for_s."""
        deadline, delay = time.monotonic() + self.retry_for_s, 0.2
        while True:
            try:
                r = self.s.request(method, self.base + path, timeout=30, **kwargs)
                self._count(str(r.status_code))
                if r.status_code < 500 and r.status_code != 429:
                    return r
            except requests.ConnectionError:
                self._count("connection_error")
            except requests.Timeout:
                self._count("timeout")
            if time.monotonic() > deadline:
                self._count("gave_up")
                return None
            self._count("retries")
            time.sleep(delay * (0.5 + self.rng.random()))
            delay = min(delay * 2, 5.0)

    def step(self) -> bool:
        """One item: False when the queue is empty."""
        r = self.request("POST", f"/api/v1/projects/{self.slug}/next-item")
        if r is None:
            return True
        if r.status_code == 204:
            return False
        if r.status_code != 200:
            self._count(f"next_{r.status_code}")
            return True
        lease, item = r.json()["lease"], r.json()["item"]
        comparisons, winner = self.run_build(
            item, lambda m: self.rng.choice((m.left, m.right, None)), decided_ms=lambda: self.rng.randint(500, 3000))
        body = {"lease": lease["id"], "key": str(uuid.uuid4()), "comparisons": comparisons, "ranking": None,
                "winner": winner, "rating": self.rng.randint(1, 5), "time_spent_ms": 2000, "layout": None}
        if item.get("layout_stage"):
            body["layout"] = next(c["layout"] for c in item["candidates"] if c["id"] == winner)
        time.sleep(self.think_s * self.rng.random())
        r = self.request("POST", f"/api/v1/items/{item['id']}/judgements", json=body)
        if r is not None and r.status_code in (200, 201):
            self.acked.append(r.json()["id"])
            self._count("judged")
        elif r is not None:
            self._count(f"submit_{r.status_code}")
        return True

    def run(self, until: float, *, stop_when_empty: bool = False) -> None:
        """Work until the monotonic time `until` (or a later `self.until` another thread sets); an
        empty queue waits (generation adds items)."""
        self.until = max(until, getattr(self, "until", 0.0))
        while time.monotonic() < self.until:
            if not self.step():
                if stop_when_empty:
                    break
                time.sleep(0.5)
        self.finished = True


# ------------------------------------------------------------------ commands (inside the deployment)
def _glb(seed: int) -> bytes:
    import numpy as np

    from modelzoo.mesh import glb_bytes

    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32) * (0.1 + 0.001 * seed)
    f = np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]], dtype=np.uint32)
    return glb_bytes(v, f)


def _box_masks(n: int, width: int = 64, height: int = 48):
    """n distinct box masks of one photo: (array, bbox) with every box its own position and size."""
    import numpy as np

    out = []
    for w in range(4, width // 2):
        for h in range(4, height // 2):
            for x in range(0, width - w, 7):
                for y in range(0, height - h, 7):
                    if len(out) == n:
                        return out
                    m = np.zeros((height, width), dtype=bool)
                    m[y:y + h, x:x + w] = True
                    out.append((m, [x, y, w, h]))
    raise ValueError(f"{n} boxes do not fit")


def seed(args) -> dict:
    """A project with `items` ready items (two stored candidates each, 200 masks per photo, made in
    bulk), `generate` photos with one mask each waiting for generation, and annotators with tokens."""
    from django.contrib.auth import get_user_model

    from annotation.models import Item, ItemState
    from engine import masks as mask_codec
    from engine.files import sha256_bytes, store_content_addressed
    from engine.ingest.services import ingest_item
    from engine.ingest.validation import ItemInput, MaskInput
    from engine.models import Membership, ObjectMask, Project, Role
    from engine.services import round_current, token_create
    from modelzoo.models import Candidate
    from modelzoo.services import bootstrap_register, project_mix_set
    from tests.engine.builders import box_mask, photo_bytes

    User = get_user_model()
    lead = User.objects.create(username="lead")
    project = Project.objects.create(name="Soak", slug=SLUG, overlap=1, gold_rate=0.0, candidates_per_item=2,
                                     sampling_steps=2, lease_seconds=args.lease_seconds, created_by=lead)
    Membership.objects.create(project=project, user=lead, role=Role.LEAD)
    checkpoint, _ = bootstrap_register(make_current=False)
    project_mix_set(project=project, mix=[(checkpoint, 1.0)])
    rnd = round_current(project=project)
    layout = {"rotation": [1, 0, 0, 0], "translation": [0, 0, -2], "scale": [1, 1, 1]}
    glbs = []
    for k in range(4):
        data = _glb(k)
        glbs.append(store_content_addressed(folder="candidates", sha256=sha256_bytes(data), extension="glb",
                                            data=data))
    per_photo, photo, made = 200, 0, 0
    while made < args.items:
        n = min(per_photo, args.items - made)
        first, *rest = _box_masks(n)
        out = ingest_item(project=project, item=ItemInput(
            name=f"photo-{photo}.png", image_bytes=photo_bytes(seed=photo),
            masks=[MaskInput(source_name=f"photo-{photo}", label="cup", array=first[0])]))
        masks = list(out.image.masks.all())
        for array, bbox in rest:
            rle = mask_codec.encode(array)
            masks.append(ObjectMask(image=out.image, rle_counts=rle, rle_sha256=sha256_bytes(rle.encode()),
                                    bbox=bbox, area=int(array.sum()), label="cup"))
        ObjectMask.objects.bulk_create([m for m in masks if m.pk is None])
        items = Item.objects.bulk_create([Item(project=project, round=rnd, mask=m, state=ItemState.READY)
                                          for m in masks])
        Candidate.objects.bulk_create([
            Candidate(item=item, checkpoint=checkpoint, seed=k, steps=2, glb=glbs[(i + k) % len(glbs)],
                      num_vertices=4, num_faces=4, layout=layout)
            for i, item in enumerate(items) for k in range(2)])
        made += n
        photo += 1
    generate_masks = []
    for i in range(args.generate):
        out = ingest_item(project=project, item=ItemInput(
            name=f"generate-{i}.png", image_bytes=photo_bytes(seed=10_000 + i),
            masks=[MaskInput(source_name=f"generate-{i}", label="cup", array=box_mask())]))
        generate_masks.append(out.image.masks.get().pk)
    tokens = []
    for a in range(args.annotators):
        user = User.objects.create(username=f"annotator{a}")
        Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
        tokens.append(token_create(user=user, name="soak")[1])
    return {"tokens": tokens, "generate_masks": generate_masks, "items": args.items}


def generate(args) -> dict:
    from engine.models import Project
    from engine.rounds.generate import generation_job_start

    job = generation_job_start(project=Project.objects.get(slug=SLUG), mask_ids=args.masks, steps=2,
                               candidates_per_item=2)
    return {"job": job.pk, "items": job.total_items}


def snapshot(args) -> dict:
    from django.db import transaction

    from engine.exports import services
    from engine.models import Project

    with transaction.atomic():
        snap, _ = services.snapshot_define(project=Project.objects.get(slug=SLUG), kind="dpo", format="parquet",
                                           keep_ties=True, shard_bytes=4096)
        services.snapshot_build_enqueue(snapshot=snap)
    return {"snapshot": snap.pk}


def snapshot_rebuild(args) -> dict:
    """In a restored database: the snapshot defined again (its row deleted first, so the same
    definition with the same watermark is new), built in this process; the new manifest."""
    from engine.exports import services
    from engine.exports.models import Snapshot
    from engine.models import Project

    old = Snapshot.objects.get(pk=args.snapshot)
    definition = old.definition
    old.delete()
    snap, created = services.snapshot_define(
        project=Project.objects.get(slug=SLUG), kind=definition["kind"], format=definition["format"],
        keep_ties=definition["keep_ties"], shard_bytes=definition["shard_bytes"], pairing=definition["pairing"])
    assert created and snap.definition == definition, (snap.definition, definition)
    snap = services.snapshot_build(snapshot_id=snap.pk)
    return {"snapshot": snap.pk, "manifest": snap.manifest, "verified": _manifest_verified(snap)}


def _manifest_verified(snap) -> bool:
    """Every file of the manifest read back from storage with its size and sha256."""
    import hashlib

    from django.core.files.storage import default_storage

    for entry in snap.manifest.get("files", []):
        with default_storage.open(entry["storage_name"], "rb") as handle:
            data = handle.read()
        if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            return False
    return bool(snap.manifest.get("files"))


def _rebuilt_identical(snap) -> bool:
    """The snapshot's files written again now, from the database as it is, have the manifest's
    sha256s: what was built is complete (a build the faults cut short would differ)."""
    import tempfile
    from pathlib import Path

    from engine.exports import services
    from modelzoo.files import sha256_file

    with tempfile.TemporaryDirectory() as folder:
        written = services.snapshot_files_write(snapshot=snap, folder=Path(folder))
        again = {rel: sha256_file(local) for rel, local in written["files"]}
    return again == {e["path"]: e["sha256"] for e in snap.manifest["files"]}


def check(args) -> dict:
    """What the database says after the run; with --acked, the judgement ids clients saw confirmed."""
    from django.db import connection
    from django.db.models import Count, Sum
    from django.utils import timezone

    from annotation.models import Item, Judgement, Lease
    from engine.exports.models import Snapshot
    from modelzoo.models import Candidate, GenerationJob, GenerationJobItem

    def one(sql: str, params=()) -> int:
        with connection.cursor() as cur:
            cur.execute(sql, params)
            return int(cur.fetchone()[0] or 0)

    acked = json.load(open(args.acked)) if args.acked else []
    stored = set(Judgement.objects.values_list("id", flat=True))
    now = timezone.now()
    items = dict(Item.objects.values_list("state").annotate(n=Count("id")).values_list("state", "n"))
    jobs = list(GenerationJob.objects.values("id", "state", "total_items"))
    job_items = dict(GenerationJobItem.objects.values_list("state").annotate(n=Count("id"))
                     .values_list("state", "n"))
    generated = Item.objects.filter(mask__in=GenerationJobItem.objects.values("item__mask"))
    snapshots = []
    for snap in Snapshot.objects.order_by("id"):
        snapshots.append({"id": snap.pk, "state": snap.state, "rows": snap.rows_total, "error": snap.error,
                          "files": len(snap.manifest.get("files", [])), "requeues": snap.requeues,
                          "verified": snap.state == Snapshot.State.DONE and _manifest_verified(snap),
                          "rebuilt_identical": snap.state == Snapshot.State.DONE and _rebuilt_identical(snap),
                          "definition": snap.definition, "manifest": snap.manifest})
    return {
        "judgements": len(stored),
        "acked": len(acked),
        "lost_judgements": len(set(acked) - stored),
        "acked_twice": len(acked) - len(set(acked)),
        # overlap 1: an item holds at most one accepted judgement
        "duplicated_judgements": one("SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) n FROM "
                                     "annotation_judgement WHERE status = 'accepted' GROUP BY item_id "
                                     "HAVING count(*) > 1) x"),
        "counter_mismatch": one("SELECT count(*) FROM annotation_item i WHERE judgements_done <> (SELECT count(*) "
                                "FROM annotation_judgement j WHERE j.item_id = i.id AND j.status = 'accepted')"),
        "items": items,
        "active_leases": Lease.objects.filter(state=Lease.State.ACTIVE).count(),
        "expired_active_leases": Lease.objects.filter(state=Lease.State.ACTIVE, expires_at__lt=now).count(),
        # an item in progress holds a live lease; one without is stuck until something frees it
        "stuck_items": Item.objects.filter(state="in_progress").exclude(
            leases__state=Lease.State.ACTIVE, leases__expires_at__gt=now).distinct().count(),
        "claims_mismatch": one("SELECT count(*) FROM annotation_item i WHERE claims <> judgements_done + "
                               "(SELECT count(*) FROM annotation_lease l WHERE l.item_id = i.id AND "
                               "l.state = 'active')"),
        "generation_jobs": jobs,
        "generation_job_items": job_items,
        # sent again by the lost-work sweep after their worker was killed (engine.lost_work)
        "generation_requeues": GenerationJobItem.objects.aggregate(n=Sum("requeues"))["n"] or 0,
        "generated_items": generated.count(),
        "generated_candidates": Candidate.objects.filter(item__in=generated).count(),
        "generated_items_not_2_candidates": generated.annotate(n=Count("candidates")).exclude(n=2).count(),
        "snapshots": snapshots,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("seed")
    p.add_argument("--annotators", type=int, default=32)
    p.add_argument("--items", type=int, default=300)
    p.add_argument("--generate", type=int, default=6)
    p.add_argument("--lease-seconds", type=int, default=20)
    p = sub.add_parser("generate")
    p.add_argument("--masks", type=int, nargs="+", required=True)
    sub.add_parser("snapshot")
    p = sub.add_parser("snapshot-rebuild")
    p.add_argument("--snapshot", type=int, required=True)
    p = sub.add_parser("check")
    p.add_argument("--acked")
    args = ap.parse_args(argv)

    import django

    django.setup()
    fn = {"seed": seed, "generate": generate, "snapshot": snapshot, "snapshot-rebuild": snapshot_rebuild,
          "check": check}[args.command]
    print(json.dumps(fn(args), default=str), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, ".")
    main()
