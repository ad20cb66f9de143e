"""Reference trainer of the built-in model on exported snapshots (SFT, then flow-matching DPO).

    from modelzoo.training import train, HyperParameters
    train(checkpoint="parent.pt", sft_dir="sft/", dpo_dir="dpo/", out="new.pt")
"""
from modelzoo.training.snapshot import TrainingError, open_snapshot  # noqa: F401
from modelzoo.training.trainer import STAGES, HyperParameters, load_parent, train  # noqa: F401
