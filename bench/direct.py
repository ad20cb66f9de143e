"""Direct comparisons of built-in checkpoints on the held-out gold set, judged as the simulated
annotators judge (issue 17's win rate, offline: no engine, no database).

    .venv/bin/python bench/direct.py --base modelzoo/checkpoints/bootstrap.pt r1.pt r2.pt r3.pt
    .venv/bin/python bench/direct.py --base a.pt b.pt --n 40 --domain primitives

Each checkpoint's candidates of `--seeds` seeds (4 sampling steps) on the first `--n` gold scenes
of `--domain` are scored as `engine.rounds.simulation`'s annotators score them (voxel IoU at 32^3
against the ground truth, meshes as oriented in the camera); every candidate of a checkpoint is
compared with every candidate of the base on the same scene: equal within `--equal-margin`
(half a win), else the better one wins, flipped with probability `--noise` (the expected value is
taken, no draw). Per checkpoint: its mean IoU, the paired difference of the scene means against the
base (and its standard error), how much that difference spreads from scene to scene, the share of
scenes it makes worse or better by more than the margin, and its win rate against the base.

A mean gain wins far fewer comparisons when it is uneven across scenes: the spread and the share of
scenes made worse say whether a checkpoint is better everywhere or better on average.

`--by-category` splits the figures by what the scenes depict (household: mug, can, table...):
which kinds of object a checkpoint made worse.

Prints a table, then one JSON line: `base`, `checkpoints` (path as given -> `viou32`, `d_viou32`,
`d_viou32_se`, `per_scene_sd`, `scenes_worse`, `scenes_better`, `win_rate`, with `--by-category`
also `by_category`), `setting`.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import harness
from modelzoo.metrics import camera_occupancy, expected_win_rate  # the annotators' voxels and verdicts


def annotator_ious(model, scenes, seeds: list[int]) -> np.ndarray:
    """(scenes, seeds) IoU at 32^3 of each candidate against its scene's ground truth."""
    from modelzoo.builtin import BuiltinGenerator
    from modelzoo.generators.base import GenerationRequest
    from modelzoo.metrics import voxel_iou
    from modelzoo.synth.rotations import quat_to_matrix

    gen = BuiltinGenerator(model)
    out = np.zeros((len(scenes), len(seeds)))
    for i, (s, truth) in enumerate(scenes):
        cands = gen.generate(GenerationRequest(image=s.image, mask=s.mask, seeds=seeds, steps=4,
                                               intrinsics=s.intrinsics))
        for k, c in enumerate(cands):
            out[i, k] = voxel_iou(camera_occupancy(c.vertices, c.faces, quat_to_matrix(np.asarray(c.layout.rotation))),
                                  truth)
    return out


def compare(new: np.ndarray, base: np.ndarray, margin: float, noise: float,
            categories: np.ndarray | None = None) -> dict:
    d = new.mean(axis=1) - base.mean(axis=1)
    out = {"viou32": round(float(new.mean()), 4), "d_viou32": round(float(d.mean()), 4),
            "d_viou32_se": round(harness.standard_error(d), 4), "per_scene_sd": round(float(d.std(ddof=1)), 4),
            "scenes_worse": round(float(np.mean(d < -margin)), 3),
            "scenes_better": round(float(np.mean(d > margin)), 3),
            "win_rate": round(expected_win_rate(new, base, margin, noise), 4)}
    if categories is not None:
        out["by_category"] = {
            c: {"scenes": int(m.sum()), "base_viou32": round(float(base[m].mean()), 4),
                "viou32": round(float(new[m].mean()), 4), "d_viou32": round(float(d[m].mean()), 4),
                "scenes_worse": int((d[m] < -margin).sum()), "scenes_better": int((d[m] > margin).sum())}
            for c in sorted(set(categories)) for m in [categories == c]}
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="built-in checkpoint files compared with the base (the JSON "
                                                  "line's keys, as given)")
    p.add_argument("--base", required=True, help="the checkpoint every other is compared with")
    p.add_argument("--n", type=int, default=100, help="gold scenes")
    p.add_argument("--domain", default="household")
    p.add_argument("--seeds", type=int, default=4, help="candidates a scene and checkpoint (seeds 0..K-1)")
    p.add_argument("--noise", type=float, default=0.1)
    p.add_argument("--equal-margin", type=float, default=0.02)
    p.add_argument("--by-category", action="store_true",
                   help="also split the figures by what the scenes depict (household: mug, can, table...)")
    a = p.parse_args(argv)
    if a.n < 2 or a.seeds < 1:
        p.error("--n must be at least 2 (a standard error) and --seeds at least 1")
    import torch

    from modelzoo.builtin.model import BuiltinModel
    from modelzoo.evaluate import gold_set

    torch.set_num_threads(2)
    t0 = time.time()
    gold = list(gold_set(a.n, domain=a.domain))
    categories = np.array([s.shape.category for s in gold]) if a.by_category else None
    if categories is not None and not all(categories):
        p.error(f"--by-category: the {a.domain} domain's shapes have no category (random unions of primitives)")
    scenes = []
    for s in gold:
        gv, gf = s.gt_mesh(64)
        scenes.append((s, camera_occupancy(gv, gf, s.rotation_matrix)))
    seeds = list(range(a.seeds))
    base = annotator_ious(BuiltinModel.load(a.base), scenes, seeds)
    rows = {}
    print(f"{'checkpoint':<40} {'IoU@32':>7} {'d':>8} {'+-':>7} {'spread':>7} {'worse':>6} {'better':>7} "
          f"{'win rate':>9}")
    print(f"{os.path.basename(a.base)[-40:]:<40} {base.mean():>7.4f}   (base)")
    for path in a.checkpoints:
        r = rows[path] = compare(annotator_ious(BuiltinModel.load(path), scenes, seeds), base,
                                 a.equal_margin, a.noise, categories)
        print(f"{os.path.basename(path)[-40:]:<40} {r['viou32']:>7.4f} {r['d_viou32']:>+8.4f} {r['d_viou32_se']:>7.4f} "
              f"{r['per_scene_sd']:>7.4f} {r['scenes_worse']:>6.2f} {r['scenes_better']:>7.2f} {r['win_rate']:>9.3f}",
              flush=True)
        for c, row in (r.get("by_category") or {}).items():
            print(f"  {c:<12} {row['scenes']:>3} scenes  base {row['base_viou32']:.3f}  now {row['viou32']:.3f}  "
                  f"d {row['d_viou32']:+.3f}  worse {row['scenes_worse']}  better {row['scenes_better']}")
    print(f"{a.n} {a.domain} gold scenes x {a.seeds} seeds, {time.time() - t0:.0f}s")
    out = {"base": {"checkpoint": os.path.basename(a.base), "viou32": round(float(base.mean()), 4),
                    "within_scene_sd": round(float(np.sqrt(base.var(axis=1, ddof=1).mean())), 4) if a.seeds > 1
                    else None},
           "checkpoints": rows, "setting": {k: v for k, v in vars(a).items() if k not in ("checkpoints", "base")}}
    harness.print_figures(out)
    return out


if __name__ == "__main__":
    main()
