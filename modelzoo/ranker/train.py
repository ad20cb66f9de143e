"""Training the ranker with a Bradley-Terry loss on preference pairs, and its held-out agreement.

    from modelzoo.ranker import train_ranker
    record = train_ranker(dpo_dir="snap/dpo", out="ranker.pt")   # a DPO snapshot folder (Parquet)

Pairs are split by object (photo + mask): the held-out objects' pairs never train, and the
ranker's **agreement** is the share of their pairs it orders as the annotators did (ties of the
annotators are left out, as in the DPO export's default). The weights written are the ones
trained on the other objects, so the agreement recorded belongs to them.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from modelzoo.files import sha256_file
from modelzoo.ranker.features import CandidateInput, ObjectInput, candidate_input, object_input, stack
from modelzoo.ranker.model import RankerNet


@dataclass
class RankerHyperParameters:
    epochs: int = 20
    batch: int = 128
    lr: float = 2e-4
    weight_decay: float = 1e-4
    width: int = 16
    hidden: int = 64
    held_out: float = 0.2  # share of objects whose pairs are kept out of training (the agreement's)
    # One member: share of the other objects that picks the epoch (early stopping); several: 0 turns
    # their folds off (every member trains on every object and keeps its last epoch).
    validation: float = 0.15
    seed: int = 0
    threads: int = 1
    # Networks averaged (1: one network; more: each picks its epoch on another fold of the objects).
    # 5 agreed about as well as one in bench/assisted.py and took five times as long (docs/assisted.md).
    members: int = 1
    # Each pair is shown mirrored left-right half the time (photo, candidate's view and its
    # occupancy together): a mirrored object is judged as the original, and the deep part
    # otherwise memorises the few hundred training objects within a few epochs.
    mirror: bool = True
    # Start from the silhouette's IoU with the mask (which ranks on its own: docs/assisted.md), the
    # deep part's output at zero, and keep that start if no epoch agrees better on validation: a
    # round whose pairs teach the network little no longer leaves a ranker worse than the prior.
    prior: bool = True


def _flag(text: str) -> bool:
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not true or false")
    return value


def argument_type(default):
    """The command-line parser of a hyper-parameter with this default (bool('false') would be True)."""
    return _flag if isinstance(default, bool) else type(default)


@dataclass
class PairData:
    """Objects, their candidates and preference pairs (winner index, loser index) over candidates."""

    objects: list[ObjectInput] = field(default_factory=list)
    object_keys: list[str] = field(default_factory=list)
    candidates: list[CandidateInput] = field(default_factory=list)
    candidate_object: list[int] = field(default_factory=list)
    pairs: list[tuple[int, int]] = field(default_factory=list)

    def add_object(self, key: str, obj: ObjectInput) -> int:
        self.objects.append(obj)
        self.object_keys.append(key)
        return len(self.objects) - 1

    def add_candidate(self, object_index: int, cand: CandidateInput) -> int:
        self.candidates.append(cand)
        self.candidate_object.append(object_index)
        return len(self.candidates) - 1

    def batch(self, indices) -> dict:
        return stack([self.objects[self.candidate_object[i]] for i in indices], [self.candidates[i] for i in indices])


def held_out_object(key: str, share: float, salt: str = "") -> bool:
    """A stable split by object key (the same object is held out in every run and every process)."""
    return int(hashlib.sha256((salt + key).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


def pairs_from_snapshot(snapshot) -> PairData:
    """A DPO snapshot (`modelzoo.training.open_snapshot`) as pair data; ties and pairs whose
    candidates have no layout are skipped."""
    from modelzoo.mesh.glb import read_glb
    from modelzoo.training.snapshot import _image, _mask  # the trainer's row decoding
    from modelzoo.generators.base import default_intrinsics

    data, objects, candidates = PairData(), {}, {}
    for row in snapshot.rows:
        if row.get("is_tie") or row.get("chosen_layout") is None or row.get("rejected_layout") is None:
            continue
        okey = f"{row['image_sha256']}|{row['mask']['counts']}"
        if okey not in objects:
            image, mask = _image(row["image"]), _mask(row)
            K = np.asarray(row["intrinsics"], np.float64) if row.get("intrinsics") else \
                default_intrinsics(image.shape[1], image.shape[0])
            objects[okey] = data.add_object(okey, object_input(image, mask, K))
        o = objects[okey]
        side = []
        for prefix in ("chosen_", "rejected_"):
            mesh, layout = row[f"{prefix}mesh"], row[f"{prefix}layout"]
            ckey = f"{okey}|{mesh['path']}|{json.dumps(layout, sort_keys=True)}"
            if ckey not in candidates:
                v, f, _ = read_glb(mesh["bytes"])
                candidates[ckey] = data.add_candidate(o, candidate_input(data.objects[o], v, f, layout))
            side.append(candidates[ckey])
        data.pairs.append((side[0], side[1]))
    return data


@torch.no_grad()
def score_candidates(net: RankerNet, data: PairData, indices=None, chunk: int = 512) -> np.ndarray:
    net.eval()
    indices = list(range(len(data.candidates))) if indices is None else list(indices)
    out = [net(data.batch(indices[i:i + chunk])) for i in range(0, len(indices), chunk)]
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def agreement(scores: np.ndarray, pairs: list[tuple[int, int]]) -> float | None:
    """Share of pairs (winner, loser) the scores order the same way; equal scores count half."""
    if not pairs:
        return None
    w = np.array([scores[a] for a, _ in pairs])
    lo = np.array([scores[b] for _, b in pairs])
    return float(((w > lo) + 0.5 * (w == lo)).mean())


def mirrored(batch: dict, flip: torch.Tensor) -> dict:
    """The batch with the rows where `flip` is true seen in a mirror: the photo crop and the
    candidate's view flipped left-right, its occupancy along x (the camera's, which runs with the
    photo's columns); the silhouette scores do not change under a mirror."""
    def where(t, dims):
        return torch.where(flip.view(-1, *([1] * (t.dim() - 1))), t.flip(dims), t)
    return {**batch, "crop": where(batch["crop"], (-1,)), "view": where(batch["view"], (-1,)),
            "occ": where(batch["occ"], (1,))}


def validation_fold(key: str, folds: int) -> int:
    """The member (of `folds`) whose epoch an object's pairs pick: stable by object key."""
    return int(hashlib.sha256(("fold|" + key).encode()).hexdigest()[:8], 16) % folds


def fit(data: PairData, hp: RankerHyperParameters | None = None, log=print) -> tuple[RankerNet, dict]:
    """Train on the pairs of the objects not held out; returns (net, stats with the held-out agreement).

    One member: `validation` of the other objects pick the epoch (early stopping). Several: member k
    picks its epoch on the k-th of `members` folds of those objects and trains on the rest, so that
    every object trains most members and the ensemble's mean score does not hang on one small
    validation set (one network's agreement depends on its seed: docs/assisted.md)."""
    hp = hp or RankerHyperParameters()
    if not data.pairs:
        raise ValueError("no preference pairs to train the ranker on (ties are skipped)")
    if not 1 <= hp.members <= 16:
        raise ValueError(f"members must be 1 to 16, not {hp.members}")
    if hp.epochs < 1:
        raise ValueError(f"epochs must be at least 1, not {hp.epochs}")
    held = [held_out_object(k, hp.held_out) for k in data.object_keys]
    obj = data.candidate_object
    test_pairs = [p for p in data.pairs if held[obj[p[0]]]]
    rest = [p for p in data.pairs if not held[obj[p[0]]]]
    if not rest:
        raise ValueError("every pair belongs to a held-out object; give more objects or a smaller held_out")
    # The member whose epoch each object's pairs pick (-1: none; they train every member).
    if hp.members == 1:
        picks = [0 if held_out_object(k, hp.validation, "validation") else -1 for k in data.object_keys]
    else:
        picks = [validation_fold(k, hp.members) if hp.validation > 0 else -1 for k in data.object_keys]
    before = torch.get_num_threads()
    torch.set_num_threads(hp.threads)
    t0, history, epochs, states, validation_pairs = time.time(), [], [], [], 0
    try:
        for member in range(hp.members):
            val_pairs = [p for p in rest if picks[obj[p[0]]] == member]
            train_pairs = [p for p in rest if picks[obj[p[0]]] != member]
            if not val_pairs or not train_pairs:  # too few objects to split: train on all, keep the last epoch
                val_pairs, train_pairs = [], rest
            validation_pairs += len(val_pairs)
            net, epoch, hist = _fit_member(data, train_pairs, val_pairs, hp, hp.seed + member,
                                           lambda m, k=member: log(m if hp.members == 1 else f"member {k}: {m}"))
            states.append(net.state_dict())
            epochs.append(epoch)
            history += [{**h, "member": member} for h in hist] if hp.members > 1 else hist
    finally:
        torch.set_num_threads(before)
    net = RankerNet(width=hp.width, hidden=hp.hidden, members=hp.members)
    if hp.members == 1:
        net.load_state_dict(states[0])
    else:
        for member, state in zip(net.members, states):
            member.load_state_dict(state)
    net.eval()
    scores = score_candidates(net, data)
    stats = {"pairs": len(data.pairs), "train_pairs": len(train_pairs) if hp.members == 1 else len(rest),
             "validation_pairs": validation_pairs,
             "held_out_pairs": len(test_pairs), "objects": len(data.objects), "candidates": len(data.candidates),
             "epoch": epochs[0] if hp.members == 1 else epochs, "members": hp.members,
             "held_out_agreement": None if not test_pairs else round(agreement(scores, test_pairs), 4),
             "train_agreement": round(agreement(scores, rest), 4), "history": history,
             "seconds": round(time.time() - t0, 1)}
    return net, stats


def _fit_member(data: PairData, train_pairs, val_pairs, hp: RankerHyperParameters, seed: int, log):
    """One network trained on `train_pairs`, the epoch with the best agreement on `val_pairs` kept
    (the last one without them); returns (net, that epoch, the history of every fifth epoch)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = RankerNet(width=hp.width, hidden=hp.hidden)
    best = (-1.0, -1, None)  # (validation agreement, epoch, weights)
    if hp.prior:
        net.start_from_silhouette()
        if val_pairs:  # epoch -1: the prior itself
            best = (agreement(score_candidates(net, data), val_pairs), -1,
                    {k: t.clone() for k, t in net.state_dict().items()})
    opt = torch.optim.AdamW(net.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
    history = []
    tp = np.asarray(train_pairs)
    steps = hp.epochs * max(1, int(np.ceil(len(tp) / hp.batch)))
    step = 0
    for epoch in range(hp.epochs):
        net.train()
        order = rng.permutation(len(tp))
        losses = []
        for i in range(0, len(order), hp.batch):
            p = tp[order[i:i + hp.batch]]
            for g in opt.param_groups:  # cosine decay
                g["lr"] = hp.lr * 0.5 * (1 + np.cos(np.pi * step / steps))
            n = len(p)
            batch = data.batch(np.concatenate([p[:, 0], p[:, 1]]))
            if hp.mirror:  # a pair's two candidates are mirrored together, with their photo
                flip = torch.from_numpy(rng.random(n) < 0.5)
                batch = mirrored(batch, torch.cat([flip, flip]))
            s = net(batch)
            loss = -F.logsigmoid(s[:n] - s[n:]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
        scores = score_candidates(net, data)
        v = agreement(scores, val_pairs) if val_pairs else float(epoch)
        if v > best[0]:
            best = (v, epoch, {k: t.clone() for k, t in net.state_dict().items()})
        if epoch == hp.epochs - 1 or epoch % 5 == 0:
            entry = {"epoch": epoch, "loss": round(float(np.mean(losses)), 4),
                     "train_agreement": round(agreement(scores, train_pairs), 4),
                     "validation_agreement": round(v, 4) if val_pairs else None}
            history.append(entry)
            log(f"ranker epoch {epoch}: loss {entry['loss']:.4f}, agreement train {entry['train_agreement']:.3f}"
                f", validation {entry['validation_agreement']}")
    net.load_state_dict(best[2])
    return net, best[1], history


def train_ranker(*, dpo_dir: str, out: str, hp: RankerHyperParameters | None = None, lineage: dict | None = None,
                 log=print) -> dict:
    """Train from a DPO snapshot folder; writes `out` (+ `out.json`) and returns the record."""
    from modelzoo.training.snapshot import open_snapshot, require_kind

    hp = hp or RankerHyperParameters()
    snapshot = open_snapshot(dpo_dir)
    require_kind(snapshot, "dpo", "ranker")
    t0 = time.time()
    data = pairs_from_snapshot(snapshot)
    log(f"ranker: {len(data.pairs)} pairs, {len(data.candidates)} candidates of {len(data.objects)} objects "
        f"({time.time() - t0:.0f}s to read and encode)")
    net, stats = fit(data, hp, log=log)
    record = {"format": "modelzoo.ranker.training/1", "hyperparameters": asdict(hp),
              "snapshot": {"path": os.path.abspath(dpo_dir), "rows": len(snapshot.rows), **snapshot.provenance},
              **stats, **(lineage or {})}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    meta = {k: record[k] for k in ("format", "hyperparameters", "held_out_agreement")}
    meta["snapshot"] = {k: v for k, v in record["snapshot"].items() if k != "path"}  # the same file from any folder
    net.save(out, meta=json.loads(json.dumps(meta)))
    record["sha256"] = sha256_file(out)
    with open(os.path.splitext(out)[0] + ".json", "w") as fh:
        json.dump(record, fh, indent=2)
    log(f"wrote {out}: held-out agreement {record['held_out_agreement']} on {record['held_out_pairs']} pairs")
    return record


class Ranker:
    """Scores candidates of one object with a trained `RankerNet` (higher is better)."""

    def __init__(self, net: RankerNet):
        self.net = net.eval()

    @classmethod
    def from_file(cls, path_or_bytes) -> "Ranker":
        src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else path_or_bytes
        return cls(RankerNet.load(src))

    @torch.no_grad()
    def score(self, image: np.ndarray, mask: np.ndarray, K: np.ndarray, candidates) -> np.ndarray:
        """`candidates`: [(vertices, faces, layout)]; returns one score per candidate."""
        obj = object_input(image, mask, K)
        cands = [candidate_input(obj, v, f, lay) for v, f, lay in candidates]
        if not cands:
            return np.zeros(0, np.float32)
        return self.net(stack([obj] * len(cands), cands)).numpy()
