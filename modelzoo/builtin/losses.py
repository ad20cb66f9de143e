"""Training losses of the built-in model: the shape autoencoder's (pretraining, and the shape
decoder's fine-tuning on real shapes), flow matching (pretraining and SFT) and the SAM 3D
paper's flow-matching DPO (adapted from Diffusion-DPO).

Rectified flow: ``x_t = (1 - t) x_0 + t x_1``, ``x_0 ~ N(0, I)``, target velocity
``v = x_1 - x_0``. Errors are squared L2 norms averaged over the flow-vector dimensions
(so `beta` does not depend on the vector's length).

DPO (SAM 3D, section on preference alignment)::

    L = -log sigmoid(-beta * [(||v_w - v_theta(x_w)||^2 - ||v_w - v_ref(x_w)||^2)
                             - (||v_l - v_theta(x_l)||^2 - ||v_l - v_ref(x_l)||^2)])

with the same noise x_0 and time t for winner (w) and loser (l), and the frozen SFT model
as reference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def autoencoder_loss(model, x: torch.Tensor, generator: torch.Generator | None = None):
    """(loss, bce, logits) of the shape autoencoder on occupancies x (B, 32, 32, 32) in {0, 1}:
    binary cross-entropy plus a soft-IoU term, and a small penalty on the latent's size.
    With a `generator`, noise on the latent makes the decoder tolerant of the flow's sampling error."""
    z = model.shape_encoder(x)
    if generator is not None:
        z = z + 0.05 * torch.randn(z.shape, generator=generator).to(z.device) * z.detach().std()
    logits = model.shape_decoder(z)
    bce = F.binary_cross_entropy_with_logits(logits, x)
    p = torch.sigmoid(logits)
    soft_iou = (p * x).sum(dim=(1, 2, 3)) / (p + x - p * x).sum(dim=(1, 2, 3)).clamp_min(1e-6)
    return bce + 0.5 * (1 - soft_iou).mean() + 1e-4 * (z ** 2).mean(), bce, logits


def sample_flow_inputs(x1: torch.Tensor, noise: torch.Tensor | None = None, t: torch.Tensor | None = None,
                       generator: torch.Generator | None = None):
    """(x_t, t, target velocity, noise) for targets x1 (B, D)."""
    # Drawn by the (CPU) generator and then moved: a run on a GPU draws the noise a CPU run draws.
    if noise is None:
        noise = torch.randn(x1.shape, generator=generator).to(x1.device)
    if t is None:
        t = torch.rand(x1.shape[0], generator=generator).to(x1.device)
    x_t = (1 - t[:, None]) * noise + t[:, None] * x1
    return x_t, t, x1 - noise, noise


def flow_errors(model, cond: torch.Tensor, x1: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Per-sample ||v - v_model(x_t, t | cond)||^2 (mean over dimensions), shape (B,)."""
    x_t, t, v, _ = sample_flow_inputs(x1, noise, t)
    return ((model.velocity(x_t, t, cond) - v) ** 2).mean(dim=1)


def flow_matching_loss(model, cond: torch.Tensor, x1: torch.Tensor, noise: torch.Tensor | None = None,
                       t: torch.Tensor | None = None, weights: torch.Tensor | None = None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """The conditional flow-matching loss (pretraining, SFT). `weights` (B,) optional, e.g.
    annotator ratings."""
    _, t, _, noise = sample_flow_inputs(x1, noise, t, generator)
    err = flow_errors(model, cond, x1, noise, t)
    if weights is None:
        return err.mean()
    return (err * weights).sum() / weights.sum().clamp_min(1e-8)


def dpo_loss_from_errors(err_w_theta: torch.Tensor, err_w_ref: torch.Tensor, err_l_theta: torch.Tensor,
                         err_l_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """The paper's DPO loss from the four error terms (each (B,) or scalar), averaged.

    ``-log sigmoid(-beta * ((ew - ew_ref) - (el - el_ref)))``: lower winner error relative
    to the reference, and higher loser error, lower the loss.
    """
    inside = (err_w_theta - err_w_ref) - (err_l_theta - err_l_ref)
    return -F.logsigmoid(-beta * inside).mean()


def flow_dpo_loss(model, ref_model, cond: torch.Tensor, x1_w: torch.Tensor, x1_l: torch.Tensor,
                  beta: float = 100.0, noise: torch.Tensor | None = None, t: torch.Tensor | None = None,
                  ref_cond: torch.Tensor | None = None, generator: torch.Generator | None = None):
    """Flow-matching DPO for preference pairs sharing one image (cond: (B, C) for both).

    `ref_cond` is the reference model's own condition (defaults to `cond`: pass it when the
    image encoder is trained too). Returns (loss, stats dict of detached means).
    """
    if noise is None:
        noise = torch.randn(x1_w.shape, generator=generator).to(x1_w.device)
    if t is None:
        t = torch.rand(x1_w.shape[0], generator=generator).to(x1_w.device)
    ew = flow_errors(model, cond, x1_w, noise, t)
    el = flow_errors(model, cond, x1_l, noise, t)
    with torch.no_grad():
        rc = cond if ref_cond is None else ref_cond
        ew_ref = flow_errors(ref_model, rc, x1_w, noise, t)
        el_ref = flow_errors(ref_model, rc, x1_l, noise, t)
    loss = dpo_loss_from_errors(ew, ew_ref, el, el_ref, beta)
    inside = (ew - ew_ref) - (el - el_ref)
    stats = {
        "loss": float(loss.detach()),
        "reward_accuracy": float((inside < 0).float().mean()),
        "err_w": float(ew.detach().mean()), "err_l": float(el.detach().mean()),
        "err_w_ref": float(ew_ref.mean()), "err_l_ref": float(el_ref.mean()),
    }
    return loss, stats
