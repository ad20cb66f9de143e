"""python -m modelzoo.ranker --dpo snap/dpo --out ranker.pt [--epochs 40 --held-out 0.2 ...]"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from modelzoo.ranker.train import RankerHyperParameters, argument_type, train_ranker
from modelzoo.training.snapshot import TrainingError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m modelzoo.ranker", description=__doc__)
    p.add_argument("--dpo", required=True, help="a DPO snapshot folder (Parquet)")
    p.add_argument("--out", required=True, help="the ranker file to write (+ .json with the record)")
    for f in fields(RankerHyperParameters):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=argument_type(f.default), default=f.default)
    a = p.parse_args(argv)
    hp = RankerHyperParameters(**{f.name: getattr(a, f.name) for f in fields(RankerHyperParameters)})
    try:
        train_ranker(dpo_dir=a.dpo, out=a.out, hp=hp)
    except (TrainingError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
