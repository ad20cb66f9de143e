"""Score a built-in checkpoint on the synthetic gold set, against a trivial baseline.

    python -m modelzoo.evaluate --checkpoint modelzoo/checkpoints/bootstrap.pt [--n 200]

Gold set: scenes with seeds GOLD_SEED_BASE + i, disjoint from every training seed.
Candidate: seed 0 of the model at 4 steps (and, with --best-of N, the best of N seeds by
voxel IoU: the headroom that human picking can harvest). Baseline: a sphere the size of
the mask's box, identity rotation, at the depth that makes it look that big.

Shape metrics compare the meshes as oriented in the camera (each by its own rotation),
normalised to [-1, 1]; layout metrics compare the posed meshes in the camera frame.
Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from modelzoo.generators.base import GenerationRequest, Layout
from modelzoo.metrics import layout_metrics, shape_metrics
from modelzoo.synth import FIT, NOMINAL_HALF_SIZE, sample_scene
from modelzoo.synth.rotations import quat_to_matrix

GOLD_SEED_BASE = 900_000_000
KEYS = ("voxel_iou@64", "chamfer", "fscore@0.01", "fscore@0.05", "rotation_error_deg", "add_s", "add_s@0.1",
        "box_iou_3d", "translation_error_m")


def gold_set(n: int, start: int = 0, domain: str = "primitives"):
    """Scenes `start`..`start + n` of the gold set of a scene domain (`modelzoo.synth.DOMAINS`):
    the same seeds for every domain, never used for training."""
    return (sample_scene(GOLD_SEED_BASE + i, domain=domain) for i in range(start, start + n))


def baseline_candidate(sample) -> tuple[np.ndarray, np.ndarray, Layout]:
    import trimesh

    from modelzoo.builtin.data import CROP_MARGIN, mask_box

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=FIT * NOMINAL_HALF_SIZE)
    K = sample.intrinsics
    u, v, side = mask_box(sample.mask)
    depth = K[0, 0] * 2 * FIT * NOMINAL_HALF_SIZE / (side / CROP_MARGIN)
    t = depth * np.array([(u - K[0, 2]) / K[0, 0], -(v - K[1, 2]) / K[1, 1], -1.0])
    layout = Layout(rotation=(1.0, 0.0, 0.0, 0.0), translation=tuple(t), scale=(1.0, 1.0, 1.0))
    return np.asarray(sphere.vertices, np.float32), np.asarray(sphere.faces, np.int32), layout


def score(pred_v, pred_f, pred_layout: Layout, gt_v, gt_f, gt_layout: Layout, resolution: int = 64) -> dict:
    m = shape_metrics(pred_v, pred_f, gt_v, gt_f, pred_rotation=quat_to_matrix(pred_layout.rotation),
                      gt_rotation=quat_to_matrix(gt_layout.rotation), n_points=5000, resolution=resolution)
    m.update(layout_metrics(pred_v, pred_f, pred_layout, gt_v, gt_f, gt_layout, n_points=3000))
    return m


def _summary(rows: list[dict]) -> dict:
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["rotation_error_deg_median"] = float(np.median([r["rotation_error_deg"] for r in rows]))
    return out


def evaluate(checkpoint: str, n: int = 200, steps: int = 4, best_of: int = 0, start: int = 0, log=print,
             domain: str = "primitives") -> dict:
    from modelzoo.builtin import BuiltinGenerator

    gen = BuiltinGenerator.from_checkpoint(checkpoint)
    model_rows, base_rows, best_rows = [], [], []
    t0 = time.time()
    gen_time = 0.0
    for i, s in enumerate(gold_set(n, start, domain)):
        gt_v, gt_f = s.gt_mesh(64)
        seeds = list(range(max(1, best_of)))
        tg = time.perf_counter()
        cands = gen.generate(GenerationRequest(image=s.image, mask=s.mask, seeds=seeds, steps=steps,
                                               intrinsics=s.intrinsics))
        gen_time += time.perf_counter() - tg
        c = cands[0]
        model_rows.append(score(c.vertices, c.faces, c.layout, gt_v, gt_f, s.layout))
        bv, bf, bl = baseline_candidate(s)
        base_rows.append(score(bv, bf, bl, gt_v, gt_f, s.layout))
        if best_of > 1:
            scored = [model_rows[-1]] + [score(c.vertices, c.faces, c.layout, gt_v, gt_f, s.layout)
                                         for c in cands[1:]]
            best_rows.append(max(scored, key=lambda r: r["voxel_iou@64"]))
        if log and (i + 1) % 50 == 0:
            log(f"evaluated {i + 1}/{n} ({time.time() - t0:.0f}s)")
    result = {
        "gold_set": {"n": n, "seed_base": GOLD_SEED_BASE + start, "steps": steps, "domain": domain},
        "model": _summary(model_rows),
        "baseline_sphere": _summary(base_rows),
        "generate_seconds_per_object": gen_time / n,
    }
    if best_rows:
        result[f"model_best_of_{best_of}"] = _summary(best_rows)
    return result


def format_table(result: dict) -> str:
    cols = [k for k in result if k.startswith(("model", "baseline"))]
    keys = list(KEYS) + ["rotation_error_deg_median"]
    lines = [f"{'metric':<28}" + "".join(f"{c:>22}" for c in cols)]
    for k in keys:
        lines.append(f"{k:<28}" + "".join(f"{result[c][k]:>22.4f}" for c in cols))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--best-of", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--domain", default="primitives", help="Scene domain of the gold set (modelzoo.synth.DOMAINS).")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    result = evaluate(args.checkpoint, n=args.n, steps=args.steps, best_of=args.best_of,
                      log=lambda m: print(m, flush=True), domain=args.domain)
    print(format_table(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
