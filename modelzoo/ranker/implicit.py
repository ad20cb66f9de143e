"""The second ranker, almost free: the implicit reward of a DPO-trained built-in checkpoint.

DPO makes ``beta * (log pi(x) - log pi_ref(x))`` the policy's reward. For a flow-matching model
the log-likelihood is, up to a constant, minus the flow-matching error (the ELBO view that
Diffusion-DPO and SAM 3D's loss rest on), so the reward of a candidate x is

    r(x) = -beta * E_{x_0, t} [ ||v - v_theta(x_t)||^2 - ||v - v_ref(x_t)||^2 ]

with x its flow vector (`BuiltinModel.encode_candidate`: the mesh re-encoded, as the trainer
does for a snapshot). The expectation is a mean over `draws` (noise, time) pairs, the same for
every candidate of an object (common random numbers: differences between candidates are not
noise between draws).
"""
from __future__ import annotations

import numpy as np
import torch

from modelzoo.builtin.data import crop_single, mask_box
from modelzoo.builtin.layout import box_features
from modelzoo.builtin.losses import flow_errors
from modelzoo.builtin.model import BuiltinModel
from modelzoo.generators.base import Layout


class ImplicitReward:
    def __init__(self, policy: BuiltinModel, reference: BuiltinModel, beta: float = 500.0, draws: int = 16,
                 seed: int = 0):
        if policy.config != reference.config:
            raise ValueError(f"policy and reference differ in architecture: {policy.config} vs {reference.config}")
        self.policy, self.reference = policy.eval(), reference.eval()
        self.beta, self.draws, self.seed = beta, draws, seed

    @classmethod
    def from_files(cls, policy: str, reference: str, **kwargs) -> "ImplicitReward":
        return cls(BuiltinModel.load(policy), BuiltinModel.load(reference), **kwargs)

    @torch.no_grad()
    def score(self, image: np.ndarray, mask: np.ndarray, K: np.ndarray, candidates) -> np.ndarray:
        """`candidates`: [(vertices, faces, layout)]; one reward per candidate (higher is better)."""
        if not candidates:
            return np.zeros(0, np.float32)
        mask = np.asarray(mask).astype(bool)
        K = np.asarray(K, np.float64)
        box = mask_box(mask)
        crop = crop_single(np.asarray(image), mask, box)
        feats = torch.from_numpy(box_features(box[None], K)).float()
        x1 = torch.cat([self.policy.encode_candidate(v, f, lay if isinstance(lay, Layout) else Layout.from_dict(lay),
                                                     mask, K) for v, f, lay in candidates])
        return self.score_encoded(crop, feats, x1)

    @torch.no_grad()
    def score_encoded(self, crop: torch.Tensor, feats: torch.Tensor, x1: torch.Tensor) -> np.ndarray:
        """The rewards of one object's candidates already encoded: `crop` (1, C, H, W) and `feats`
        (1, F) as the trainer's condition, `x1` (n, D) their flow vectors."""
        n = len(x1)
        g = torch.Generator().manual_seed(self.seed)
        noise = torch.randn((self.draws, x1.shape[1]), generator=g)
        t = torch.rand(self.draws, generator=g)
        cond_p = self.policy.encode_condition(crop, feats)
        cond_r = self.reference.encode_condition(crop, feats)
        diff = torch.zeros(n)
        for k in range(self.draws):  # the same (x_0, t) for every candidate
            nk, tk = noise[k].expand(n, -1), t[k].expand(n)
            diff += flow_errors(self.policy, cond_p.expand(n, -1), x1, nk, tk) \
                - flow_errors(self.reference, cond_r.expand(n, -1), x1, nk, tk)
        return (-self.beta * diff / self.draws).numpy()
