"""The simulated data engine: synthetic objects with known ground truth, simulated annotators
that work only through the HTTP API, and the whole loop round after round.

Each round: ingest new synthetic photos (rendered by `modelzoo.synth`, through the real ingest
service) -> open the round (generation by a real Celery worker on queue "model", or in this
process with `inline_generation`; the mix may hold a retrieval backend beside the checkpoints)
-> annotators log in and judge over HTTP (king of the hill, preferring the candidate closer to
the ground truth by voxel IoU, with a noise rate, "equal" when too close, and a quality rating
from the same IoU) -> artists model the hard cases over HTTP (the ground-truth shape with an
artist's error, placed in the photo) -> close the round (SFT and DPO snapshots) -> train SFT +
DPO from them -> evaluate offline on the held-out gold set -> the new checkpoint joins the mix
for the next round. The next round's comparisons between checkpoints give each a Bradley-Terry
rating.

What the annotators and artists do is in `SimulatedAnnotator` and `SimulatedArtist`; nothing
there touches the database. `Simulation.hooks` lets other code (a ranker, a reward model) run
at the round's steps without editing the loop: each hook is called as hook(simulation, round,
row) after the annotation ("annotated") and after training ("trained").
"""
from __future__ import annotations

import io
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field

import numpy as np
import requests
from django.contrib.auth import get_user_model
from PIL import Image as PILImage

from annotation.king_of_the_hill import run_build
from annotation.models import Comparison
from engine.exports import services as export_services
from engine.files import sha256_bytes
from engine.ingest.services import ingest_item
from engine.ingest.validation import ItemInput, MaskInput
from engine.models import Membership, Project, Role
from engine.rounds import selectors, services, train
from engine.rounds.generate import job_item_generate
from engine.rounds.services import DEFAULT_PAIRING
from engine.rounds.train import checkpoint_evaluation
from engine.stats.bradley_terry import fit_ratings, win_rate
from modelzoo.generators.registry import seeds_are_ranks
from modelzoo.mesh import read_glb
from modelzoo.metrics import expected_win_rate, shape_metrics
from modelzoo.models import Checkpoint, GenerationJob, GenerationJobItem, ProjectCheckpoint
from modelzoo.services import bootstrap_register, checkpoint_register, project_mix_set
from modelzoo.synth import sample_scene
from modelzoo.synth.artist import ArtistError, artist_mesh
from modelzoo.synth.rotations import quat_to_matrix

#: Scenes of the simulated projects: disjoint from pretraining (seed * 1e7 + i, i < 1e6 or so)
#: and from the gold set (9e8 + i).
SIM_SEED_BASE = 700_000_000
#: Voxel IoU of the winner -> rating: below 0.3 is 1 (unusable), 0.45 2, 0.6 3, 0.75 4, else 5.
RATING_EDGES = (0.3, 0.45, 0.6, 0.75)


@dataclass
class Setting:
    rounds: int = 2
    annotators: int = 2
    items_per_round: int = 400
    candidates: int = 8  # best-of-8, as in SAM 3D
    # The objects' shape distribution (`modelzoo.synth.DOMAINS`). "household" is a target domain
    # the bootstrap was not pretrained on, as real photos are for SAM 3D; "primitives" is the
    # pretraining distribution itself (docs/loop.md: where the loop cannot add much).
    domain: str = "household"
    steps: int = 4
    noise: float = 0.1  # probability that a strict preference is flipped
    equal_margin: float = 0.02  # |IoU difference| below this: "equal"
    alpha: int = 3
    new_share: float = 0.5
    rating_round: bool = True  # one more generate + annotate round to rate the last checkpoint
    # Objects in the rating round (0: as many as a training round). Its candidates come from every
    # checkpoint of the loop in equal shares (a library backend keeps its own), as an arena draws
    # its models, so each pair of checkpoints meets as often as any other.
    rating_items: int = 0
    eval_n: int = 100
    cumulative: bool = False  # train round r on the snapshots of rounds 1..r (else round r only)
    from_start: bool = False  # train every round from the start checkpoint (else from the previous one)
    inline_generation: bool = False
    seed: int = 0
    # "dpo": preferences from the parent as reference; "both": SFT on the chosen candidates first
    # (docs/loop.md: SFT on the model's own samples lowered the gold metrics in every variant tried).
    stage: str = "dpo"
    hyperparameters: dict = field(default_factory=dict)
    # Artists model every hard case of a round (about a quarter of the items) through the artist API:
    # the ground-truth shape with an artist's error (`modelzoo.synth.artist`); 0: hard cases stay negatives.
    artists: int = 0
    # A retrieval backend (`modelzoo.generators.retrieval`) in the mix at this share of the candidates,
    # over a library of `retrieval_library` shapes of the project's domain (seeds disjoint from its photos).
    retrieval_share: float = 0.0
    retrieval_library: int = 200
    # Which SFT rows train with stage "both" (the trainer's `sft_sources`): "all", or a comma list of
    # artist, retrieval, model. "artist,retrieval": SFT on the targets worth fitting, then DPO.
    sft_sources: str = "all"
    # Pre-ranking (issue 16): after each training round closes, a ranker trains on its DPO snapshot
    # (all rounds' with `cumulative`); the next training round generates this many candidates per
    # object and shows the ranker's top (candidates - pre_rank_random) plus pre_rank_random drawn
    # from the rest. 0: off. The rating round is never pre-ranked, so that the comparisons that rate
    # the last checkpoint see its samples as they come.
    pre_rank: int = 0
    pre_rank_random: int = 2
    # Score every checkpoint on the pretraining gold set too (the check that it does not forget it);
    # False halves the evaluation time, which dominates a run on a CPU.
    eval_primitives: bool = True


def _num(v, width: int = 8) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:>{width}.4f}"


# ------------------------------------------------------------------ the annotators (HTTP only)
def rating_for(iou: float) -> int:
    return 1 + sum(iou >= e for e in RATING_EDGES)


class SimulatedAnnotator:
    """Logs in with a password, then judges items over HTTP until the queue is empty.

    `oracle(image_id)` gives the ground truth the simulated person sees in the photo:
    (gt vertices, gt faces, gt rotation). Candidates are scored by voxel IoU at 32^3 of the
    meshes as oriented in the camera (as the gold-set metrics do).
    """

    def __init__(self, base: str, username: str, password: str, project: str, oracle, *, noise: float,
                 equal_margin: float, seed: int):

        self.base, self.project, self.oracle = base.rstrip("/"), project, oracle
        self.noise, self.equal_margin = noise, equal_margin
        self.rng = random.Random(seed)
        self.s = requests.Session()
        r = self.s.post(f"{self.base}/api/v1/auth/token/", json={"username": username, "password": password,
                                                                  "name": "simulation"})
        r.raise_for_status()
        self.s.headers["Authorization"] = f"Token {r.json()['key']}"
        self.judged = 0
        self.comparisons = 0

    def score(self, cand: dict, truth) -> float:
        r = self.s.get(self.base + cand["glb_url"])
        r.raise_for_status()
        v, f, _ = read_glb(r.content)
        gt_v, gt_f, gt_R = truth
        m = shape_metrics(v, f, gt_v, gt_f, pred_rotation=quat_to_matrix(cand["layout"]["rotation"]),
                          gt_rotation=gt_R, n_points=2000, resolution=32)
        return m["voxel_iou@32"]

    def prefer(self, a: float, b: float) -> str:
        """'a', 'b' or 'equal' for two IoUs, with the noise rate flipping strict preferences."""
        if abs(a - b) < self.equal_margin:
            return "equal"
        better = "a" if a > b else "b"
        if self.rng.random() < self.noise:
            better = "b" if better == "a" else "a"
        return better

    def run(self) -> int:
        while True:
            r = self.s.post(f"{self.base}/api/v1/projects/{self.project}/next-item")
            if r.status_code == 204:
                return self.judged
            r.raise_for_status()
            lease, item = r.json()["lease"], r.json()["item"]
            truth = self.oracle(item["image"]["id"])
            cands = item["candidates"]
            scores = {c["id"]: self.score(c, truth) for c in cands}

            def decide(m):
                verdict = self.prefer(scores[m.king], scores[m.challenger])
                return None if verdict == "equal" else (m.king if verdict == "a" else m.challenger)

            comparisons, king = run_build(item, decide, decided_ms=lambda: self.rng.randint(1500, 6000))
            rating = rating_for(scores[king])
            if self.rng.random() < self.noise:
                rating = min(5, max(1, rating + self.rng.choice((-1, 1))))
            body = {"lease": lease["id"], "key": str(uuid.uuid4()), "comparisons": comparisons, "ranking": None,
                    "winner": king, "rating": rating, "time_spent_ms": self.rng.randint(8000, 30000),
                    "layout": None}
            if item["layout_stage"] and rating >= item["quality_scale"]["threshold"]:
                body["layout"] = next(c["layout"] for c in cands if c["id"] == king)
            self.s.post(f"{self.base}/api/v1/items/{item['id']}/judgements", json=body).raise_for_status()
            self.judged += 1
            self.comparisons += len(comparisons)


class SimulatedArtist:
    """Logs in with a password, then models every item of the artist queue over HTTP: the
    ground truth's mesh with an artist's error (`ArtistError`), placed in the photo (the layout),
    with the time it took. `oracle(image_id)` -> (gt vertices, gt faces, gt Layout)."""

    def __init__(self, base: str, username: str, password: str, project: str, oracle, *, error: ArtistError,
                 seed: int, index: int = 0, count: int = 1):
        self.base, self.project, self.oracle, self.error = base.rstrip("/"), project, oracle, error
        self.index, self.count = index, count  # artist `index` of `count` takes the items whose id % count is it
        self.rng = random.Random(seed)
        self.s = requests.Session()
        r = self.s.post(f"{self.base}/api/v1/auth/token/", json={"username": username, "password": password,
                                                                  "name": "simulation"})
        r.raise_for_status()
        self.s.headers["Authorization"] = f"Token {r.json()['key']}"
        self.meshes = 0
        self.minutes = 0.0

    def model(self, truth) -> tuple[bytes, dict, int]:
        from modelzoo.mesh import glb_bytes

        gt_v, gt_f, layout = truth
        v, f, placed = artist_mesh(gt_v, gt_f, layout, self.error, np.random.default_rng(self.rng.getrandbits(32)))
        return glb_bytes(v, f, None), placed.as_dict(), self.error.time_ms(self.rng)

    def run(self) -> int:
        while True:
            r = self.s.get(f"{self.base}/api/v1/projects/{self.project}/artist-queue")
            r.raise_for_status()
            rows = [row for row in r.json()["results"] if row["id"] % self.count == self.index]
            if not rows:
                return self.meshes
            for row in rows:
                glb, layout, ms = self.model(self.oracle(row["image"]))
                up = self.s.post(f"{self.base}/api/v1/items/{row['id']}/artist-mesh",
                                 files={"file": ("mesh.glb", glb, "model/gltf-binary")},
                                 data={"layout": json.dumps(layout), "time_spent_ms": str(ms),
                                       "note": "simulated artist"})
                if up.status_code == 409:  # another artist took it meanwhile
                    continue
                up.raise_for_status()
                self.meshes += 1
                self.minutes += ms / 60_000


# ------------------------------------------------------------------ processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float = 60.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.3)
    raise RuntimeError(f"server at {url} did not start within {timeout:.0f}s")


class Services:
    """gunicorn on 127.0.0.1 and (unless inline) one Celery worker on queue "model"; stopped by pid."""
    def __init__(self, *, server: bool, worker: bool, log):
        self.procs: list[subprocess.Popen] = []
        self.base = None
        self.log = log
        env = dict(os.environ, TORCH_THREADS="2", OMP_NUM_THREADS="2")
        if server:
            port = _free_port()
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "engine.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                 "--threads", "2", "--timeout", "120", "--log-level", "warning"], env=env))
            self.base = f"http://127.0.0.1:{port}"
            _wait_http(self.base + "/accounts/login/")
            log(f"gunicorn serving {self.base} (pid {self.procs[-1].pid})")
        if worker:
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "engine", "worker", "-Q", "model", "--concurrency", "1",
                 "--pool", "prefork", "-l", "WARNING", "-n", f"sim{os.getpid()}@%h", "--without-gossip",
                 "--without-mingle", "--without-heartbeat"], env=env))
            log(f"celery worker on queue 'model' (pid {self.procs[-1].pid})")

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


# ------------------------------------------------------------------ the loop

def run_in_threads(workers) -> None:
    """Each simulated person's `run()` in a thread of its own, as people work at once; the first
    error of any of them is raised once all have stopped."""
    errors = []

    def work(a):
        try:
            a.run()
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(a,)) for a in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]

class Simulation:
    def __init__(self, setting: Setting, *, slug: str | None = None, base_url: str | None = None,
                 checkpoint_path: str | None = None, log=print):
        self.st = setting
        self.slug = slug or time.strftime("sim-%Y%m%d-%H%M%S")
        self.base_url = base_url
        self.checkpoint_path = checkpoint_path
        self.log = log
        self.truth: dict[int, tuple] = {}  # image id -> (gt vertices, gt faces, gt rotation)
        self.pending_truth: dict[int, object] = {}  # image id -> SynthSample
        self.rows: list[dict] = []
        self.passwords: dict[str, str] = {}
        self.artist_passwords: dict[str, str] = {}
        self.layouts: dict[int, object] = {}  # image id -> ground-truth Layout (what an artist matches)
        self.retrieval = None
        self.ranker = None  # the ranker that pre-ranks the next round (Setting.pre_rank)
        # Extension points: name -> [hook(simulation, round, row)], see the module's docstring.
        self.hooks: dict[str, list] = {"annotated": [], "trained": []}

    # -- setup ----------------------------------------------------------------------------
    def setup(self):
        User = get_user_model()
        lead, _ = User.objects.get_or_create(username=f"{self.slug}-lead")
        self.project = Project.objects.create(
            name=f"Simulation {self.slug}", slug=self.slug, candidates_per_item=self.st.candidates,
            quality_threshold=self.st.alpha, overlap=1, gold_rate=0.0, sampling_steps=self.st.steps,
            lease_seconds=600, created_by=lead)
        Membership.objects.create(user=lead, project=self.project, role=Role.LEAD)
        for i in range(self.st.annotators):
            name = f"{self.slug}-ann{i + 1}"
            user, _ = User.objects.get_or_create(username=name)
            password = uuid.uuid4().hex
            user.set_password(password)
            user.save()
            Membership.objects.create(user=user, project=self.project, role=Role.ANNOTATOR)
            self.passwords[name] = password
        for i in range(self.st.artists):
            name = f"{self.slug}-artist{i + 1}"
            user, _ = User.objects.get_or_create(username=name)
            password = uuid.uuid4().hex
            user.set_password(password)
            user.save()
            Membership.objects.create(user=user, project=self.project, role=Role.ARTIST)
            self.artist_passwords[name] = password
        if self.checkpoint_path:
            data = open(self.checkpoint_path, "rb").read()
            sha = sha256_bytes(data)
            self.bootstrap = Checkpoint.objects.filter(sha256=sha, backend="builtin").first() or checkpoint_register(
                name="builtin", version=f"sim-start-{sha[:8]}", backend="builtin", data=data,
                lineage={"bootstrap": True})[0]
        else:
            self.bootstrap, _ = bootstrap_register(make_current=False)
        mix = [(self.bootstrap, 1.0)]
        if self.st.retrieval_share > 0:
            self.retrieval = self.retrieval_register()
            mix = [(self.bootstrap, 1.0 - self.st.retrieval_share), (self.retrieval, self.st.retrieval_share)]
        project_mix_set(project=self.project, mix=mix)

    def retrieval_register(self):
        """The retrieval backend's checkpoint: a library of the domain's shapes (seeds disjoint from
        the photos), built once per (domain, size) and kept under VAR_DIR."""
        from django.conf import settings

        from modelzoo.generators import retrieval

        n, domain = self.st.retrieval_library, self.st.domain
        path = os.path.join(str(settings.VAR_DIR), "retrieval", f"{domain}-{n}-{retrieval.LIBRARY_SEED_BASE}.npz")
        if not os.path.exists(path):
            t0 = time.time()
            os.makedirs(os.path.dirname(path), exist_ok=True)
            arrays = retrieval.build_library(retrieval.synthetic_meshes(domain, n, retrieval.LIBRARY_SEED_BASE),
                                             log=None)
            retrieval.save_library(arrays, path + ".part")
            os.replace(path + ".part", path)
            self.log(f"built the retrieval library: {n} {domain} shapes in {time.time() - t0:.0f}s")
        data = open(path, "rb").read()
        sha = sha256_bytes(data)
        return Checkpoint.objects.filter(sha256=sha, backend="retrieval").first() or checkpoint_register(
            name="retrieval", version=f"{domain}-{n}-{sha[:8]}", backend="retrieval", data=data,
            lineage={"library": {"domain": domain, "shapes": n, "seed_base": retrieval.LIBRARY_SEED_BASE}})[0]

    def ingest(self, round_index: int, items: int) -> list[int]:
        """Render and ingest this round's `items` photos; returns their mask ids."""
        mask_ids = []
        for i in range(items):
            seed = SIM_SEED_BASE + self.st.seed * 1_000_000 + round_index * 10_000 + i
            s = sample_scene(seed, domain=self.st.domain)
            buf = io.BytesIO()
            PILImage.fromarray(s.image).save(buf, format="PNG")
            # With the true camera, as the gold set is evaluated (the trainer gets it from the
            # intrinsics.json sidecar of the snapshot folder).
            out = ingest_item(project=self.project, item=ItemInput(
                name=f"scene-{seed}.png", image_bytes=buf.getvalue(), intrinsics=s.intrinsics.tolist(),
                masks=[MaskInput(source_name=f"scene-{seed}", label="object", array=s.mask)]))
            self.pending_truth[out.image.pk] = s  # ground-truth meshes: while candidates generate
            mask_ids += list(out.image.masks.values_list("pk", flat=True))
        return mask_ids

    # -- one round ---------------------------------------------------------------------------
    def generate(self, rnd, mask_ids):
        job = GenerationJob.objects.filter(round=rnd).order_by("-id").first()
        t0 = time.time()
        for image_id, s in list(self.pending_truth.items()):  # overlaps with the worker's generation
            gt_v, gt_f = s.gt_mesh(64)
            self.truth[image_id] = (gt_v, gt_f, s.rotation_matrix)
            self.layouts[image_id] = s.layout
            del self.pending_truth[image_id]
        if self.st.inline_generation:
            for ji in GenerationJobItem.objects.filter(job=job).order_by("pk").values_list("pk", flat=True):
                job_item_generate(job_item_id=ji)
        while True:
            job.refresh_from_db()
            if job.state == GenerationJob.State.FINISHED:
                break
            if time.time() - t0 > 1800:
                raise RuntimeError(f"generation job {job.pk} did not finish in 30 minutes")
            time.sleep(1.0)
        failed = GenerationJobItem.objects.filter(job=job, state=GenerationJobItem.State.FAILED).count()
        self.log(f"  generated {job.total_candidates} candidates for {job.total_items} items "
                 f"({failed} failed) in {time.time() - t0:.0f}s")

    def annotate(self, base: str) -> dict:
        t0 = time.time()
        annotators = [SimulatedAnnotator(base, name, pw, self.slug, self.truth.__getitem__, noise=self.st.noise,
                                         equal_margin=self.st.equal_margin, seed=self.st.seed * 100 + k)
                      for k, (name, pw) in enumerate(self.passwords.items())]
        run_in_threads(annotators)
        n = sum(a.judged for a in annotators)
        self.log(f"  {len(annotators)} annotators judged {n} items over HTTP in {time.time() - t0:.0f}s")
        return {"judged": n}

    def artists_work(self, base: str) -> dict:
        """The artists model every hard case of the queue; returns meshes and simulated minutes."""
        if not self.artist_passwords:
            return {"artist_meshes": 0, "artist_hours": 0.0}
        t0 = time.time()
        oracle = lambda image_id: (*self.truth[image_id][:2], self.layouts[image_id])  # noqa: E731
        n = len(self.artist_passwords)
        artists = [SimulatedArtist(base, name, pw, self.slug, oracle, error=ArtistError(),
                                   seed=self.st.seed * 100 + 50 + k, index=k, count=n)
                   for k, (name, pw) in enumerate(self.artist_passwords.items())]
        run_in_threads(artists)
        meshes, minutes = sum(a.meshes for a in artists), sum(a.minutes for a in artists)
        self.log(f"  {n} artists uploaded {meshes} meshes over HTTP in {time.time() - t0:.0f}s "
                 f"({minutes / 60:.1f} simulated artist hours)")
        return {"artist_meshes": meshes, "artist_hours": round(minutes / 60, 2)}

    def _hook(self, name: str, rnd, row: dict) -> None:
        for hook in self.hooks.get(name, ()):
            hook(self, rnd, row)

    def ratings(self) -> dict:
        """Bradley-Terry Elo of every checkpoint from all recorded comparisons between
        candidates of different checkpoints (ties as half wins), the bootstrap at 1000."""

        rows = Comparison.objects.filter(judgement__project=self.project, judgement__status="accepted").values_list(
            "left__checkpoint_id", "right__checkpoint_id", "outcome", "judgement__item__round__index")
        comps = [(a, b, {"left": 1.0, "right": 0.0, "equal": 0.5}[o]) for a, b, o, _ in rows if a != b]
        fitted = {r.model: r for r in fit_ratings(comps, anchor=self.bootstrap.pk, bootstrap_rounds=200)}
        return {"fitted": fitted, "comparisons": comps, "win_rate": win_rate}

    def run(self) -> dict:
        import torch  # heavy: only a process that runs the simulation pays for it

        torch.set_num_threads(2)
        started = time.time()
        self.setup()
        svc = Services(server=self.base_url is None, worker=not self.st.inline_generation, log=self.log)
        base = self.base_url or svc.base
        try:
            self.log(f"project {self.slug}: evaluating the start checkpoint {self.bootstrap} on "
                     f"{self.st.eval_n} gold scenes")
            for domain in self._eval_domains():
                ev = train.checkpoint_evaluation(self.bootstrap, domain)
                if (ev.get("gold_set") or {}).get("n") != self.st.eval_n or \
                        "annotator_iou@32" not in (ev.get("per_scene") or {}) or \
                        ev["gold_set"].get("seeds") != list(train.EVAL_SEEDS):
                    train.checkpoint_evaluate(checkpoint=self.bootstrap, n=self.st.eval_n, domain=domain,
                                                 log_fn=self.log)
            checkpoints = [self.bootstrap]
            total_rounds = self.st.rounds + (1 if self.st.rating_round else 0)
            for index in range(1, total_rounds + 1):
                train_round = index <= self.st.rounds
                t0 = time.time()
                items = self.st.items_per_round if train_round else (self.st.rating_items or self.st.items_per_round)
                self.log(f"round {index}{'' if train_round else ' (rating only)'}: ingest {items} objects")
                if not train_round:
                    self._arena_mix(checkpoints)
                mask_ids = self.ingest(index, items)
                pre_rank = None
                if self.ranker is not None and train_round:
                    drawn = min(self.st.pre_rank_random, self.st.candidates - 1)  # at least one of the top
                    shown = self.st.candidates - drawn
                    pre_rank = {"ranker": self.ranker.pk, "generate": self.st.pre_rank, "shown": shown,
                                "random": drawn}
                    self.log(f"  pre-ranked: {self.st.pre_rank} candidates an object, the ranker's top {shown} "
                             f"and {drawn} drawn from the rest shown")
                rnd = services.round_open(project=self.project, mask_ids=mask_ids, steps=self.st.steps,
                                          candidates_per_item=self.st.candidates, pre_rank=pre_rank)
                self.generate(rnd, mask_ids)
                self.annotate(base)
                artist_figures = self.artists_work(base)
                rnd = services.round_close(round=rnd, build="inline")
                status = selectors.round_status(round=rnd)
                row = {"round": index, "items": status["items"], "judgements": status["judgements"],
                       "acceptance_rate": status["acceptance_rate"], "hard_case_rate": status["hard_case_rate"],
                       "sft_rows": status["sft_rows"], "dpo_pairs": status["dpo_rows"], "mix": rnd.mix,
                       **artist_figures, **self._retrieval_figures(rnd)}
                self._hook("annotated", rnd, row)
                if train_round:
                    if not rnd.sft_snapshot_id or not rnd.dpo_snapshot_id:
                        raise RuntimeError(f"round {index} produced no SFT or DPO data: {status}")
                    sft_id, dpo_id = rnd.sft_snapshot_id, rnd.dpo_snapshot_id
                    if self.st.cumulative and index > 1:
                        sft_id, dpo_id = self._cumulative_snapshots(index)
                    run = train.training_run_create(
                        project=self.project, stage=self.st.stage, sft_snapshot_id=sft_id, dpo_snapshot_id=dpo_id,
                        parent=checkpoints[0] if self.st.from_start else checkpoints[-1], round=rnd,
                        hyperparameters={"sft_sources": self.st.sft_sources, **self.st.hyperparameters})
                    run = train.training_run_execute(run_id=run.pk, eval_n=self.st.eval_n,
                                                        evaluate="primitives" in self._eval_domains(),
                                                        log_fn=lambda m: self.log("  " + m))
                    cp = run.checkpoint
                    if self.st.pre_rank:
                        self.ranker = self._ranker_train(dpo_id)
                        row["ranker_agreement"] = self.ranker.evaluation.get("held_out_agreement")
                    if self.st.domain != "primitives":  # the run evaluated it on the pretraining domain
                        train.checkpoint_evaluate(checkpoint=cp, n=self.st.eval_n, domain=self.st.domain,
                                                     log_fn=lambda m: self.log("  " + m))
                    services.round_checkpoint_set(round=rnd, checkpoint=cp, share=self.st.new_share)
                    checkpoints.append(cp)
                    row.update(checkpoint=str(cp), checkpoint_id=cp.pk, parent_id=cp.parent_id,
                               dpo_reward_accuracy=cp.recipe.get("dpo_reward_accuracy"),
                               sft_examples=((cp.lineage.get("snapshots") or {}).get("sft") or {}).get("examples"),
                               **self._metrics(cp))
                    self._hook("trained", rnd, row)
                row["seconds"] = round(time.time() - t0, 1)
                self.rows.append(row)
                self.log(f"round {index} done in {row['seconds']:.0f}s: {json.dumps(row, default=str)}")
        finally:
            svc.stop()
        rt = self.ratings()
        return self.report(checkpoints, rt, time.time() - started)

    def _arena_mix(self, checkpoints) -> None:
        """Every checkpoint of the loop at an equal share of the models' part of the mix; a library
        backend (retrieval) keeps its share."""
        library = [(pc.checkpoint, pc.share) for pc in
                   ProjectCheckpoint.objects.filter(project=self.project).select_related("checkpoint")
                   if seeds_are_ranks(pc.checkpoint.backend)]
        models_part = 1 - sum(s for _, s in library)
        mix = [(cp, models_part / len(checkpoints)) for cp in checkpoints] + library
        project_mix_set(project=self.project, mix=mix)
        self.log("  rating mix: " + ", ".join(f"{c} {s:.3f}" for c, s in mix))

    def _ranker_train(self, dpo_snapshot_id: int):
        from engine.rounds.ranker import ranker_train

        t0 = time.time()
        ranker = ranker_train(project=self.project, dpo_snapshot_id=dpo_snapshot_id)
        self.log(f"  ranker {ranker}: held-out agreement {ranker.evaluation.get('held_out_agreement')} on "
                 f"{ranker.evaluation.get('held_out_pairs')} pairs ({time.time() - t0:.0f}s)")
        return ranker

    def _cumulative_snapshots(self, index: int) -> tuple[int, int]:
        ids = []
        for kind in ("sft", "dpo"):
            snap, _ = export_services.snapshot_define(
                project=self.project, kind=kind, format="parquet", filters={"rounds": list(range(1, index + 1))},
                pairing=DEFAULT_PAIRING if kind == "dpo" else None)
            ids.append(export_services.snapshot_build(snapshot_id=snap.pk).pk)
        return ids[0], ids[1]

    def _retrieval_figures(self, rnd) -> dict:
        """How many items' winners came from the retrieval backend (accepted judgements)."""
        if self.retrieval is None:
            return {}
        from annotation.models import Judgement

        js = Judgement.objects.filter(item__round=rnd, status="accepted")
        return {"retrieval_wins": js.filter(winner__checkpoint=self.retrieval).count(),
                "retrieval_wins_accepted": js.filter(winner__checkpoint=self.retrieval,
                                                     below_threshold=False).count()}

    def _eval_domains(self) -> list[str]:
        """Gold sets every checkpoint is scored on: the project's domain, and the pretraining one."""
        return list(dict.fromkeys([self.st.domain] + (["primitives"] if self.st.eval_primitives else [])))

    def _metrics(self, cp) -> dict:
        m = checkpoint_evaluation(cp, self.st.domain).get("model", {})
        pre = checkpoint_evaluation(cp, "primitives").get("model", {})
        return {"voxel_iou": m.get("voxel_iou@64"), "chamfer": m.get("chamfer"), "fscore@0.05": m.get("fscore@0.05"),
                "rotation_error_deg": m.get("rotation_error_deg"), "voxel_iou_primitives": pre.get("voxel_iou@64"),
                "chamfer_primitives": pre.get("chamfer")}

    # -- report --------------------------------------------------------------------------------
    def report(self, checkpoints, rt, seconds) -> dict:
        fitted, comps, win_rate = rt["fitted"], rt["comparisons"], rt["win_rate"]
        b = self._metrics(self.bootstrap)

        per_b = checkpoint_evaluation(self.bootstrap, self.st.domain)["per_scene"]
        lines = []
        head = (f"{'round':>5} {'items':>5} {'judged':>6} {'accept':>6} {'hard':>5} {'sft':>4} {'dpo':>5} "
                f"{'art':>4} {'retr':>4} "
                f"{'checkpoint':<28} {'vIoU@64':>8} {'chamfer':>8} {'dIoU':>7} {'dCham':>8} {'prim.IoU':>8} {'elo [95% CI]':>22} "
                f"{'vs parent':>9} {'vs boot':>7} {'dpo acc':>7}")
        lines.append(head)

        def elo(cid):
            r = fitted.get(cid)
            return "-" if r is None else f"{r.rating:.0f} [{r.ci_low:.0f},{r.ci_high:.0f}] n={r.comparisons}"

        lines.append(f"{0:>5} {'-':>5} {'-':>6} {'-':>6} {'-':>5} {'-':>4} {'-':>5} {'-':>4} {'-':>4} "
                     f"{str(self.bootstrap)[:28]:<28} "
                     f"{b['voxel_iou']:>8.4f} {b['chamfer']:>8.4f} {'':>7} {'':>8} {_num(b['voxel_iou_primitives'])} "
                     f"{elo(self.bootstrap.pk):>22}")
        viou, cham, elos = [b["voxel_iou"]], [b["chamfer"]], [0.0 if self.bootstrap.pk in fitted else None]
        viou_pre, cham_pre = [b["voxel_iou_primitives"]], [b["chamfer_primitives"]]
        paired, paired_prev, direct, direct_n = [], [], [], []
        per_prev = per_b
        for row in self.rows:
            f = lambda v, w=6, p=2: "-" if v is None else f"{v:>{w}.{p}f}"  # noqa: E731
            cols = (f"{row['round']:>5} {row['items']:>5} {row['judgements']:>6} {f(row['acceptance_rate'])} "
                    f"{f(row['hard_case_rate'], 5)} {row['sft_rows'] or 0:>4} {row['dpo_pairs'] or 0:>5} "
                    f"{row.get('artist_meshes', 0):>4} {row.get('retrieval_wins', '-'):>4} ")
            if "checkpoint_id" in row:
                cid = row["checkpoint_id"]

                cp = Checkpoint.objects.get(pk=cid)
                per = checkpoint_evaluation(cp, self.st.domain)["per_scene"]
                d_iou = np.asarray(per["voxel_iou@64"]) - np.asarray(per_b["voxel_iou@64"])
                d_ch = np.asarray(per["chamfer"]) - np.asarray(per_b["chamfer"])
                se = lambda d: float(d.std(ddof=1) / np.sqrt(len(d)))  # noqa: E731
                paired.append({"round": row["round"], "d_viou": float(d_iou.mean()), "d_viou_se": se(d_iou),
                               "d_chamfer": float(d_ch.mean()), "d_chamfer_se": se(d_ch)})
                # against the round before (the bootstrap for round 1): "better after every round"
                p_iou = np.asarray(per["voxel_iou@64"]) - np.asarray(per_prev["voxel_iou@64"])
                p_ch = np.asarray(per["chamfer"]) - np.asarray(per_prev["chamfer"])
                paired_prev.append({"round": row["round"], "d_viou": float(p_iou.mean()), "d_viou_se": se(p_iou),
                                    "d_chamfer": float(p_ch.mean()), "d_chamfer_se": se(p_ch)})
                per_prev = per
                vs = win_rate(comps, cid, row["parent_id"])
                # direct: every gold-set candidate of this checkpoint against every one of the bootstrap
                new, base = per["annotator_iou@32"], per_b["annotator_iou@32"]
                direct.append(round(expected_win_rate(new, base, self.st.equal_margin, self.st.noise), 4))
                direct_n.append(sum(len(a) * len(b) for a, b in zip(new, base)))
                r = fitted.get(cid)
                elos.append(None if r is None else round(r.rating - fitted[self.bootstrap.pk].rating, 1)
                            if self.bootstrap.pk in fitted else None)
                viou.append(row["voxel_iou"])
                cham.append(row["chamfer"])
                viou_pre.append(row["voxel_iou_primitives"])
                cham_pre.append(row["chamfer_primitives"])
                cols += (f"{row['checkpoint'].replace(self.slug + '-', '')[:28]:<28} {row['voxel_iou']:>8.4f} {row['chamfer']:>8.4f} "
                         f"{d_iou.mean():>+7.4f} {d_ch.mean():>+8.4f} {_num(row['voxel_iou_primitives'])} {elo(cid):>22} "
                         f"{'-' if vs['win_rate'] is None else format(vs['win_rate'], '.3f'):>9} "
                         f"{direct[-1]:>7.3f} "
                         f"{f(row.get('dpo_reward_accuracy'), 7, 3)}")
            else:
                cols += f"{'(rating round: no training)':<28}"
            lines.append(cols)
        table = "\n".join(lines)
        in_rounds = [win_rate(comps, r["checkpoint_id"], self.bootstrap.pk) for r in self.rows if "checkpoint_id" in r]
        result = {
            "viou_by_round": [round(v, 5) for v in viou], "chamfer_by_round": [round(v, 5) for v in cham],
            "domain": self.st.domain,
            "viou_by_round_primitives_gold": [None if v is None else round(v, 5) for v in viou_pre],
            "chamfer_by_round_primitives_gold": [None if v is None else round(v, 5) for v in cham_pre],
            "elo_by_round": elos, "paired_vs_bootstrap": paired, "paired_vs_previous_round": paired_prev,
            "judgements_by_round": [r["judgements"] for r in self.rows],
            "acceptance_by_round": [r["acceptance_rate"] for r in self.rows],
            "hard_case_rate_by_round": [r["hard_case_rate"] for r in self.rows],
            "win_rate_vs_parent": [win_rate(comps, r["checkpoint_id"], r["parent_id"])["win_rate"]
                                   for r in self.rows if "checkpoint_id" in r],
            # The simulated annotators' direct comparisons of each round's checkpoint with the bootstrap:
            # every candidate of the one against every candidate of the other on each gold scene.
            "win_rate_vs_bootstrap_by_round": direct,
            "comparisons_vs_bootstrap_by_round": direct_n,
            # ... and where the rounds' candidates of the two met in the annotators' king-of-the-hill runs
            "win_rate_vs_bootstrap_in_rounds": [w["win_rate"] for w in in_rounds],
            "comparisons_vs_bootstrap_in_rounds": [w["comparisons"] for w in in_rounds],
            "artist_meshes_by_round": [r.get("artist_meshes", 0) for r in self.rows],
            "artist_hours_by_round": [r.get("artist_hours", 0.0) for r in self.rows],
            "retrieval_wins_by_round": [r.get("retrieval_wins") for r in self.rows],
            "ranker_agreement_by_round": [r.get("ranker_agreement") for r in self.rows if "checkpoint_id" in r],
            "sft_examples_by_round": [r.get("sft_examples") for r in self.rows if "checkpoint_id" in r],
            "elo_retrieval": (None if self.retrieval is None or self.retrieval.pk not in fitted
                              or self.bootstrap.pk not in fitted
                              else round(fitted[self.retrieval.pk].rating - fitted[self.bootstrap.pk].rating, 1)),
            "checkpoints": [str(c) for c in checkpoints], "project": self.slug,
            "setting": asdict(self.st), "seconds": round(seconds, 1),
        }
        return {"table": table, "result": result}
