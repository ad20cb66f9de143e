"""Offline experiments with the reference trainer: train variants on exported snapshot folders
and score each on the held-out gold set, paired against the parent (same scenes, seed 0).

    .venv/bin/python bench/loop_train.py --checkpoint modelzoo/checkpoints/bootstrap.pt \
        --sft /tmp/snap/sft --dpo /tmp/snap/dpo --n 100 --variant '{"sft_steps": 300}' ...

Prints one line per variant and stage, then one JSON line. Plain torch, no Django.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import harness  # puts the repository on sys.path


def scores(path: str, n: int, domain: str = "primitives") -> dict:
    from modelzoo.builtin import BuiltinGenerator

    iou, chamfer = harness.gold_scores(BuiltinGenerator.from_checkpoint(path, cached=False), n, domain)
    return {"viou": iou, "chamfer": chamfer}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--sft", required=True)
    ap.add_argument("--dpo", required=True)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--domain", default="primitives", help="gold set of this scene domain (household: the loop's)")
    ap.add_argument("--variant", action="append", default=[], help="JSON of HyperParameters fields")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    from modelzoo.training import HyperParameters, train

    base = scores(args.checkpoint, args.n, args.domain)
    print(f"parent: vIoU {base['viou'].mean():.4f} chamfer {base['chamfer'].mean():.4f}", flush=True)
    out = {"parent": {"viou": float(base["viou"].mean()), "chamfer": float(base["chamfer"].mean())}, "variants": []}
    work = tempfile.mkdtemp(prefix="loop-train-")
    for k, spec in enumerate(args.variant or ["{}"]):
        hp = HyperParameters(**json.loads(spec))
        t0 = time.time()
        sft_pt, dpo_pt = os.path.join(work, f"v{k}-sft.pt"), os.path.join(work, f"v{k}-dpo.pt")
        train(checkpoint=args.checkpoint, out=sft_pt, stage="sft", sft_dir=args.sft, hp=hp, log=lambda m: None)
        rec = train(checkpoint=sft_pt, out=dpo_pt, stage="dpo", dpo_dir=args.dpo, hp=hp, log=lambda m: None)
        row = {"hp": json.loads(spec), "train_seconds": round(time.time() - t0, 1),
               "dpo_reward_accuracy": rec.get("dpo_reward_accuracy")}
        for stage, path in (("sft", sft_pt), ("sft+dpo", dpo_pt)):
            s = scores(path, args.n, args.domain)
            d_iou, d_ch = s["viou"] - base["viou"], s["chamfer"] - base["chamfer"]
            se = harness.standard_error
            row[stage] = {"viou": float(s["viou"].mean()), "chamfer": float(s["chamfer"].mean()),
                          "d_viou": float(d_iou.mean()), "d_viou_se": se(d_iou),
                          "d_chamfer": float(d_ch.mean()), "d_chamfer_se": se(d_ch)}
            print(f"{spec} {stage:>8}: vIoU {s['viou'].mean():.4f} ({d_iou.mean():+.4f} +- {se(d_iou):.4f}) "
                  f"chamfer {s['chamfer'].mean():.4f} ({d_ch.mean():+.4f} +- {se(d_ch):.4f}) "
                  f"[{row['train_seconds']:.0f}s train, dpo acc {row['dpo_reward_accuracy']}]", flush=True)
        out["variants"].append(row)
    harness.print_figures(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
