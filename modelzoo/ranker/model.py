"""The ranker's network: a score for (photo crop and mask, candidate), higher is better.

Bradley-Terry: P(a preferred to b) = sigmoid(score(a) - score(b)). Small on purpose (about 75 k
parameters): it learns from a round's few thousand pairs on a CPU in minutes.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from modelzoo.ranker.features import N_SCALARS

FORMAT = "modelzoo.ranker/1"
# A 0.1 better silhouette IoU is 1 logit (73% preferred) at the start of training.
PRIOR_SCALE = 10.0


def _conv2(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1), nn.GroupNorm(4, cout), nn.SiLU())


class RankerNet(nn.Module):
    """One network, or with `members` > 1 an ensemble of that many of the same size whose score is
    their mean (each trained with another share of the objects picking its epoch: `train.fit`)."""

    def __init__(self, width: int = 16, hidden: int = 64, members: int = 1):
        super().__init__()
        self.config = dict(width=width, hidden=hidden, **({"members": members} if members > 1 else {}))
        if members > 1:
            self.members = nn.ModuleList(RankerNet(width=width, hidden=hidden) for _ in range(members))
            return
        w = width
        # Photo (RGB + mask) and the candidate's view (silhouette + depth), side by side: 6 channels.
        self.image = nn.Sequential(_conv2(6, w), _conv2(w, 2 * w), _conv2(2 * w, 2 * w), _conv2(2 * w, 2 * w),
                                   nn.Flatten())  # 32 -> 2: 2w * 4
        self.shape = nn.Sequential(nn.Conv3d(1, w, 4, 2, 1), nn.SiLU(), nn.Conv3d(w, w, 4, 2, 1), nn.SiLU(),
                                   nn.Conv3d(w, w, 4, 2, 1), nn.SiLU(), nn.Flatten())  # 16 -> 2: w * 8
        self.head = nn.Sequential(nn.Linear(2 * w * 4 + w * 8 + N_SCALARS, hidden), nn.SiLU(),
                                  nn.Dropout(0.1), nn.Linear(hidden, 1))
        # The scalar features alone already rank (silhouette IoU): a direct linear path from them.
        self.scalar_path = nn.Linear(N_SCALARS, 1)

    @torch.no_grad()
    def start_from_silhouette(self, scale: float = PRIOR_SCALE) -> None:
        """Scores become `scale` x the silhouette's IoU with the mask (the first scalar feature): the
        scalar path is set to it and the head's last layer to zero, so the deep part adds nothing
        until it learns something (its first gradients go to that last layer). One network: `train.fit`
        starts each member of an ensemble on its own."""
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        self.scalar_path.weight.zero_()
        self.scalar_path.bias.zero_()
        self.scalar_path.weight[0, 0] = scale

    def forward(self, batch: dict) -> torch.Tensor:
        """Scores (B,) for a batch from `features.stack`."""
        if "members" in self.config:
            return torch.stack([m(batch) for m in self.members]).mean(dim=0)
        img = torch.cat([batch["crop"], batch["view"] * 2 - 1], dim=1)
        h = torch.cat([self.image(img), self.shape(batch["occ"][:, None] * 2 - 1), batch["scalars"]], dim=1)
        return self.head(h)[:, 0] + self.scalar_path(batch["scalars"])[:, 0]

    # -- persistence -----------------------------------------------------------------------
    def save(self, path, meta: dict | None = None) -> None:
        torch.save({"format": FORMAT, "config": self.config, "state_dict": self.state_dict(),
                    "meta": meta or {}}, path)

    @staticmethod
    def _read(path) -> dict:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
            raise ValueError(f"not a ranker checkpoint (no 'format': '{FORMAT}')")
        return ckpt

    @classmethod
    def check(cls, path) -> None:
        """ValueError unless `path` (a path or binary file object) holds weights `load` takes."""
        ckpt = cls._read(path)
        config, state = ckpt.get("config"), ckpt.get("state_dict")
        if not isinstance(config, dict) or not all(isinstance(v, int) and 0 < v <= 4096 for v in config.values()):
            raise ValueError(f"its 'config' is not a mapping of sizes from 1 to 4096: {str(config)[:200]}")
        if not isinstance(state, dict):
            raise ValueError("its 'state_dict' is not a mapping of tensors")
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in cls(**config).state_dict().items()}
        if {k: tuple(v.shape) for k, v in state.items()} != expected:
            raise ValueError(f"its state_dict does not fit its config {config}")

    @classmethod
    def load(cls, path) -> "RankerNet":
        ckpt = cls._read(path)
        model = cls(**ckpt["config"])
        model.load_state_dict(ckpt["state_dict"])
        model.eval()
        model.meta = ckpt.get("meta", {})
        return model
