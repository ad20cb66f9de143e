"""Which training recipe can a round's picks improve the model with? Offline, without the engine.

    .venv/bin/python bench/loop_recipes.py --domain household --objects 300 \
        --variant '{"stage": "dpo"}' --variant '{"stage": "sft", "target": "gt"}' ...

For `--objects` new scenes of a domain (seeds of the simulation's range), the checkpoint proposes
`--candidates` candidates each (4 steps) and an oracle annotator scores them by the gold metric
(voxel IoU at 64^3 of the meshes as oriented in the camera) against the ground truth. Each
variant then trains a copy of the checkpoint with `modelzoo.training` and is scored on the first
`--gold` scenes of the same domain's held-out gold set, paired against the checkpoint (same
scenes, seed 0, 4 steps; the trained model saved in fp16 and read back, as the engine does).

A variant is a JSON object of `HyperParameters` fields plus:
  stage   "sft" | "dpo" | "both"  (dpo: the parent is the reference; both: the SFT model is)
  target  the SFT / DPO flow targets: "engine" (the candidate's mesh re-encoded, as the engine's
          trainer does from a snapshot), "exact" (the latent the sampler produced), "gt" (the
          ground-truth shape and pose: what an artist mesh would give, the ceiling)
  pick    "best" (the oracle's winner) or "seed0" (no selection: the model's own first sample)
  margin  DPO pairs: winner against every candidate at least this much worse (default 0.02)
  artists the fraction of objects (the hardest: lowest best-of-N IoU; the simulation's hard cases
          are about a quarter) that get an artist's mesh instead of a pick: the ground truth with
          the simulated artist's error (`modelzoo.synth.artist`), re-encoded as the
          engine's trainer does. Their SFT target is that mesh and their DPO pairs are that mesh
          against every candidate (the engine's "artist" pairing).
  sft_on  "all" (default) or "artist": SFT only on the artists' meshes (targets worth fitting),
          then DPO against the SFT model, the paper's recipe

Data (candidates, targets, scores) is cached under --cache. Prints one line per variant, then
one JSON line with the paired differences and their standard errors.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time

import numpy as np

import harness  # puts the repository on sys.path

SIM_SEED_BASE = 700_000_000  # engine.rounds.simulation.SIM_SEED_BASE (that module needs Django set up)
SIM_OFFSET = 5_000_000  # within the simulation's seed range, away from the seeds `simulate` uses first


def build(args) -> dict:
    """Candidates of the checkpoint for `args.objects` scenes, scored by the oracle, with their
    flow targets three ways (engine re-encoding, exact sampler output, ground truth)."""
    import torch

    from modelzoo.builtin import BuiltinGenerator
    from modelzoo.builtin.data import crop_single, mask_box
    from modelzoo.builtin.layout import box_features
    from modelzoo.builtin.model import BuiltinModel
    from modelzoo.evaluate import score
    from modelzoo.files import sha256_file
    from modelzoo.generators.base import GenerationRequest
    from modelzoo.synth import sample_scene
    from modelzoo.synth.rotations import quat_to_matrix

    key = f"{sha256_file(args.checkpoint)[:12]}-{args.domain}-{args.objects}-{args.candidates}"
    path = os.path.join(args.cache, f"loop-recipes-{key}.pt")
    if os.path.exists(path):
        return torch.load(path)
    gen = BuiltinGenerator(BuiltinModel.load(args.checkpoint))
    model = gen.model
    out = {k: [] for k in ("crops", "feats", "engine", "exact", "gt", "viou")}
    seeds = list(range(args.candidates))
    t0 = time.time()
    for i in range(args.objects):
        s = sample_scene(SIM_SEED_BASE + SIM_OFFSET + i, domain=args.domain)
        gv, gf = s.gt_mesh(64)
        K, box = np.asarray(s.intrinsics), mask_box(s.mask)
        pred = gen.predict(s.image, s.mask, seeds, 4, K)
        cands = gen.generate(GenerationRequest(image=s.image, mask=s.mask, seeds=seeds, steps=4, intrinsics=K))
        out["crops"].append(crop_single(s.image, s.mask.astype(bool), box)[0])
        out["feats"].append(torch.from_numpy(box_features(box[None], K))[0].float())
        out["viou"].append(torch.tensor([score(c.vertices, c.faces, c.layout, gv, gf, s.layout)["voxel_iou@64"]
                                         for c in cands]))
        with torch.no_grad():
            out["engine"].append(torch.stack([model.encode_candidate(c.vertices, c.faces, c.layout, s.mask, K)[0]
                                              for c in cands]))
            out["gt"].append(model.encode_target(
                s.occupancy[None].astype(np.float32), quat_to_matrix(s.layout.rotation)[None],
                np.asarray(s.layout.translation)[None], np.array([s.layout.scale[0]]), box[None], K)[0])
        out["exact"].append(pred["x1"])
        if (i + 1) % 50 == 0:
            print(f"  {i + 1}/{args.objects} objects ({time.time() - t0:.0f}s)", flush=True)
    data = {k: torch.stack(v) for k, v in out.items()}
    data["gt"] = data["gt"][:, None].expand(-1, args.candidates, -1).contiguous()
    os.makedirs(args.cache, exist_ok=True)
    torch.save(data, path)
    return data


def artist_targets(args, model):
    """(objects, D): each object's ground truth as a simulated artist would model it (shape noise,
    pose error; `ArtistError`'s defaults), re-encoded with `encode_candidate` (cached)."""
    import random

    import torch

    from modelzoo.files import sha256_file
    from modelzoo.synth import sample_scene
    from modelzoo.synth.artist import ArtistError, artist_mesh

    key = f"{sha256_file(args.checkpoint)[:12]}-{args.domain}-{args.objects}"
    path = os.path.join(args.cache, f"loop-recipes-artist-{key}.pt")
    if os.path.exists(path):
        return torch.load(path)
    e, pyrng = ArtistError(), random.Random(0)
    rows = []
    for i in range(args.objects):
        s = sample_scene(SIM_SEED_BASE + SIM_OFFSET + i, domain=args.domain)
        gv, gf = s.gt_mesh(64)
        v, gf, lay = artist_mesh(gv, gf, s.layout, e, np.random.default_rng(pyrng.getrandbits(32)))
        with torch.no_grad():
            rows.append(model.encode_candidate(v, gf, lay, s.mask, np.asarray(s.intrinsics))[0])
    out = torch.stack(rows)
    os.makedirs(args.cache, exist_ok=True)
    torch.save(out, path)
    return out


def gold_scores(model, args) -> tuple[np.ndarray, np.ndarray]:
    from modelzoo.builtin import BuiltinGenerator

    return harness.gold_scores(BuiltinGenerator(model), args.gold, args.domain)


def train_variant(parent, data: dict, variant: dict):
    import torch

    from modelzoo.training import HyperParameters
    from modelzoo.training.trainer import train_dpo, train_sft

    v = dict(variant)
    stage, target = v.pop("stage", "both"), v.pop("target", "engine")
    pick, margin = v.pop("pick", "best"), v.pop("margin", 0.02)
    artists, sft_on = float(v.pop("artists", 0.0)), v.pop("sft_on", "all")
    hp = HyperParameters(**v)
    viou, targets = data["viou"], data[target]
    n = len(viou)
    winner = viou.argmax(1) if pick == "best" else torch.zeros(n, dtype=torch.long)
    hard = set(viou.max(1).values.argsort()[: int(round(artists * n))].tolist()) if artists else set()
    model = copy.deepcopy(parent)
    info = {"artist_meshes": len(hard)}
    chosen = targets[torch.arange(n), winner].clone()
    for i in hard:
        chosen[i] = data["artist"][i]
    if stage in ("sft", "both"):
        keep = sorted(hard) if sft_on == "artist" else list(range(n))
        info["sft_examples"] = len(keep)
        sft = {"crops": data["crops"][keep], "feats": data["feats"][keep], "x1": chosen[keep],
               "weights": torch.ones(len(keep))}
        train_sft(model, sft, hp, log=lambda *a: None)
    if stage in ("dpo", "both"):
        rows = [(i, int(winner[i]), j) for i in range(n) if i not in hard for j in range(viou.shape[1])
                if j != int(winner[i]) and viou[i, winner[i]] - viou[i, j] > margin]
        rows += [(i, -1, j) for i in sorted(hard) for j in range(viou.shape[1])]  # the artist's mesh wins
        info["pairs"] = len(rows)
        dpo = {"crops": data["crops"][[r[0] for r in rows]], "feats": data["feats"][[r[0] for r in rows]],
               "x1_w": torch.stack([chosen[i] if w < 0 else targets[i, w] for i, w, _ in rows]),
               "x1_l": torch.stack([targets[i, j] for i, _, j in rows])}
        reference = copy.deepcopy(model)  # the parent for "dpo", the SFT model for "both"
        hist = train_dpo(model, reference, dpo, hp, log=lambda *a: None)
        info["reward_accuracy"] = hist[-1]["reward_accuracy"]
    return model, info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(harness.ROOT / "modelzoo/checkpoints/bootstrap.pt"))
    ap.add_argument("--domain", default="household")
    ap.add_argument("--objects", type=int, default=300)
    ap.add_argument("--candidates", type=int, default=6)
    ap.add_argument("--gold", type=int, default=100)
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "loop-recipes"))
    ap.add_argument("--variant", action="append", default=[], help="JSON, see above")
    args = ap.parse_args()
    import torch

    from modelzoo.builtin.model import BuiltinModel

    torch.set_num_threads(1)
    data = build(args)
    if any(json.loads(spec).get("artists") for spec in args.variant):
        data["artist"] = artist_targets(args, BuiltinModel.load(args.checkpoint))
    v = data["viou"]
    print(f"{args.objects} {args.domain} objects: seed 0 voxel IoU {v[:, 0].mean():.4f}, "
          f"oracle best of {args.candidates} {v.max(1).values.mean():.4f}")
    parent = BuiltinModel.load(args.checkpoint)
    base_iou, base_ch = gold_scores(parent, args)
    print(f"checkpoint on {args.gold} {args.domain} gold scenes: voxel IoU {base_iou.mean():.4f}, "
          f"Chamfer {base_ch.mean():.4f}")
    print(f"{'variant':<70} {'dIoU':>8} {'+-se':>6} {'dCham':>8} {'+-se':>6} {'s':>5}")
    results = []
    tmp = os.path.join(args.cache, "variant.pt")
    for spec in args.variant or ['{"stage": "dpo"}']:
        variant = json.loads(spec)
        t0 = time.time()
        model, info = train_variant(parent, data, variant)
        model.save(tmp)
        iou, ch = gold_scores(BuiltinModel.load(tmp), args)
        di, dc = iou - base_iou, ch - base_ch
        se = harness.standard_error
        row = {"variant": variant, "d_viou": round(float(di.mean()), 4), "d_viou_se": round(se(di), 4),
               "d_chamfer": round(float(dc.mean()), 4), "d_chamfer_se": round(se(dc), 4),
               "seconds": round(time.time() - t0, 1), **info}
        results.append(row)
        print(f"{json.dumps(variant):<70} {row['d_viou']:>+8.4f} {row['d_viou_se']:>6.4f} "
              f"{row['d_chamfer']:>+8.4f} {row['d_chamfer_se']:>6.4f} {row['seconds']:>5.0f}", flush=True)
    harness.print_figures({"domain": args.domain, "objects": args.objects, "candidates": args.candidates,
                           "seed0_viou": round(float(v[:, 0].mean()), 4),
                           "best_of_n_viou": round(float(v.max(1).values.mean()), 4),
                           "gold_viou": round(float(base_iou.mean()), 4), "variants": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
