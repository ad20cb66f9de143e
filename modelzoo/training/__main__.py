"""python -m modelzoo.training --checkpoint PARENT.pt --sft SFT_DIR --dpo DPO_DIR --out NEW.pt [--stage both]"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from modelzoo.training.trainer import STAGES, HyperParameters, TrainingError, train


def _arg_type(default):
    if isinstance(default, bool):
        return lambda v: str(v).lower() in ("1", "true", "yes", "on")
    return type(default)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", required=True, help="parent built-in checkpoint (.pt)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--stage", choices=STAGES, default="both")
    ap.add_argument("--sft", help="SFT snapshot folder (Parquet export)")
    ap.add_argument("--dpo", help="DPO snapshot folder (Parquet export)")
    ap.add_argument("--reference", help="DPO-only: the frozen reference (default: the parent)")
    ap.add_argument("--threads", type=int, default=2)
    for f in dataclasses.fields(HyperParameters):
        ap.add_argument("--" + f.name.replace("_", "-"), type=_arg_type(f.default), default=f.default)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    hp = HyperParameters(**{f.name: getattr(args, f.name) for f in dataclasses.fields(HyperParameters)})
    try:
        record = train(checkpoint=args.checkpoint, out=args.out, stage=args.stage, sft_dir=args.sft,
                       dpo_dir=args.dpo, reference=args.reference, hp=hp, log=lambda m: print(m, flush=True))
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: record[k] for k in ("stage", "sha256", "seconds")} | {
        "dpo_reward_accuracy": record.get("dpo_reward_accuracy")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
