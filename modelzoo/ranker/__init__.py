"""The ranker: a reward model learnt from the engine's own preference pairs (plain torch, no Django).

    from modelzoo.ranker import train_ranker, Ranker
    train_ranker(dpo_dir="snap/dpo", out="ranker.pt")          # Bradley-Terry on a DPO snapshot
    Ranker.from_file("ranker.pt").score(image, mask, K, [(vertices, faces, layout), ...])

`implicit.ImplicitReward` is the second ranker: a DPO-trained built-in checkpoint's implicit
reward against its reference.
"""
from modelzoo.ranker.model import RankerNet  # noqa: F401
from modelzoo.ranker.train import Ranker, RankerHyperParameters, agreement, fit, train_ranker  # noqa: F401
