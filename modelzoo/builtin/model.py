"""The built-in image-to-3D model: SAM 3D's factorisation, scaled down to run on a CPU.

* Shape: a 3D convolutional autoencoder gives every 32^3 occupancy grid a latent code
  (the coarse-shape latent).
* Layout: 6D allocentric rotation, crop-relative translation, apparent and absolute log
  scale (see `layout.py`).
* Conditional flow matching (rectified flow) over x = [shape latent, layout], normalised
  per dimension, conditioned on a CNN embedding of the 64x64 RGB + mask crop and the crop
  box: ``x_t = (1 - t) x_0 + t x_1`` with ``x_0 ~ N(0, I)``, target velocity ``x_1 - x_0``.
  Seeds fix x_0, so different seeds give different candidates; Euler steps (1, 4, 25...).

Training code needs: `encode_condition`, `velocity`, `encode_target` (a candidate's
occupancy + layout -> x_1), `flow_vector_dim`; see `losses.py`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from modelzoo.builtin.data import mask_box
from modelzoo.builtin.layout import LAYOUT_DIM, decode_layout, encode_layout
from modelzoo.mesh.meshing import mesh_to_cell_occupancy
from modelzoo.synth.rotations import quat_to_matrix
from modelzoo.synth.shapes import FIT, NOMINAL_HALF_SIZE

OCC_RES = 32


class ShapeEncoder(nn.Module):
    def __init__(self, latent_dim: int, ch=(24, 48, 96)):
        super().__init__()
        c1, c2, c3 = ch
        self.net = nn.Sequential(
            nn.Conv3d(1, c1, 4, 2, 1), nn.SiLU(),  # 16^3
            nn.Conv3d(c1, c2, 4, 2, 1), nn.SiLU(),  # 8^3
            nn.Conv3d(c2, c3, 4, 2, 1), nn.SiLU(),  # 4^3
            nn.Flatten(), nn.Linear(c3 * 64, latent_dim),
        )

    def forward(self, occ: torch.Tensor) -> torch.Tensor:
        return self.net(occ[:, None] * 2.0 - 1.0)


class ShapeDecoder(nn.Module):
    """latent -> 4^3 -> 8^3 -> 16^3 features -> 8 sub-voxels each (3D pixel shuffle) -> 32^3 logits."""

    def __init__(self, latent_dim: int, ch=(24, 48, 96)):
        super().__init__()
        c1, c2, c3 = ch
        self.c3 = c3
        self.fc = nn.Linear(latent_dim, c3 * 64)
        self.net = nn.Sequential(
            nn.SiLU(),
            nn.ConvTranspose3d(c3, c2, 4, 2, 1), nn.SiLU(),
            nn.ConvTranspose3d(c2, c1, 4, 2, 1), nn.SiLU(),
            nn.Conv3d(c1, c1, 3, 1, 1), nn.SiLU(),
            nn.Conv3d(c1, 8, 3, 1, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        B = z.shape[0]
        h = self.net(self.fc(z).view(B, self.c3, 4, 4, 4))
        n = OCC_RES // 2
        return h.view(B, 2, 2, 2, n, n, n).permute(0, 4, 1, 5, 2, 6, 3).reshape(B, OCC_RES, OCC_RES, OCC_RES)


def _conv(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())


class ImageEncoder(nn.Module):
    """64x64 RGB + mask crop and crop-box features -> condition vector."""

    def __init__(self, cond_dim: int = 256, width: int = 32):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            _conv(4, w, 1), _conv(w, w, 2),  # 32
            _conv(w, 2 * w, 2), _conv(2 * w, 2 * w, 1),  # 16
            _conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w, 1),  # 8
            _conv(4 * w, 6 * w, 2),  # 4
            nn.Flatten(),
        )
        self.fc = nn.Sequential(nn.Linear(6 * w * 16 + 3, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, crops: torch.Tensor, box_feats: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([self.net(crops), box_feats], dim=1))


def time_embedding(t: torch.Tensor, dim: int = 64) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    a = 100.0 * t[:, None] * freqs[None]  # periods from ~0.06 to ~60 time units
    return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


class Block(nn.Module):
    """Residual MLP block with adaptive layer norm (scale, shift, gate) from condition + time."""

    def __init__(self, hidden: int, emb: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.mod = nn.Linear(emb, 3 * hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.SiLU(), nn.Linear(2 * hidden, hidden))
        nn.init.zeros_(self.mod.weight)
        nn.init.zeros_(self.mod.bias)

    def forward(self, h, e):
        scale, shift, gate = self.mod(e).chunk(3, dim=1)
        return h + (1 + gate) * self.mlp(self.norm(h) * (1 + scale) + shift)


class VelocityNet(nn.Module):
    def __init__(self, dim: int, cond_dim: int = 256, hidden: int = 320, depth: int = 4):
        super().__init__()
        self.inp = nn.Linear(dim, hidden)
        self.emb = nn.Sequential(nn.Linear(cond_dim + 64, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.blocks = nn.ModuleList([Block(hidden, hidden) for _ in range(depth)])
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, dim))

    def forward(self, x_t, t, cond):
        e = self.emb(torch.cat([cond, time_embedding(t)], dim=1))
        h = self.inp(x_t)
        for b in self.blocks:
            h = b(h, e)
        return self.out(h)


class BuiltinModel(nn.Module):
    def __init__(self, latent_dim: int = 48, cond_dim: int = 256, hidden: int = 256, depth: int = 4,
                 image_width: int = 24):
        super().__init__()
        self.config = dict(latent_dim=latent_dim, cond_dim=cond_dim, hidden=hidden, depth=depth,
                           image_width=image_width)
        self.latent_dim = latent_dim
        self.flow_vector_dim = latent_dim + LAYOUT_DIM
        self.shape_encoder = ShapeEncoder(latent_dim)
        self.shape_decoder = ShapeDecoder(latent_dim)
        self.image_encoder = ImageEncoder(cond_dim, image_width)
        self.velocity_net = VelocityNet(self.flow_vector_dim, cond_dim, hidden, depth)
        # Auxiliary head predicting E[x_1 | image]: speeds up the image encoder's training.
        self.mean_head = nn.Linear(cond_dim, self.flow_vector_dim)
        # Per-dimension statistics of raw flow vectors (set from the training set).
        self.register_buffer("x_mean", torch.zeros(self.flow_vector_dim))
        self.register_buffer("x_std", torch.ones(self.flow_vector_dim))

    # -- conditioning and flow ---------------------------------------------------------
    def encode_condition(self, crops: torch.Tensor, box_feats: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(crops, box_feats)

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """v_theta(x_t, t | cond); t in [0, 1] of shape (B,)."""
        return self.velocity_net(x_t, t, cond)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, noise: torch.Tensor, steps: int = 4) -> torch.Tensor:
        """Euler integration of dx/dt = v from x_0 = noise (t=0) to x_1 (t=1)."""
        x = noise
        dt = 1.0 / steps
        for i in range(steps):
            t = torch.full((x.shape[0],), i * dt, device=x.device)
            x = x + dt * self.velocity(x, t, cond)
        return x

    # -- flow vector <-> (shape, layout) --------------------------------------------------
    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        return (raw - self.x_mean) / self.x_std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.x_std + self.x_mean

    def raw_target(self, occupancy, R, t, s, box, K) -> torch.Tensor:
        occ = torch.as_tensor(np.asarray(occupancy), dtype=torch.float32)
        lat = self.shape_encoder(occ)
        lay = encode_layout(np.asarray(R, np.float64), np.asarray(t, np.float64), np.asarray(s, np.float64),
                            np.asarray(box, np.float64), np.asarray(K, np.float64))
        return torch.cat([lat, torch.as_tensor(lay, dtype=torch.float32)], dim=1)

    def encode_target(self, occupancy, R, t, s, box, K) -> torch.Tensor:
        """Flow target x_1 (B, D) of candidates: occupancy (B, 32, 32, 32) over [-1, 1]^3
        (object frame / NOMINAL_HALF_SIZE), rotation matrices (B, 3, 3), translations (B, 3)
        metres, uniform scales (B,), crop boxes (B, 3) from `mask_box`, intrinsics."""
        return self.normalise(self.raw_target(occupancy, R, t, s, box, K))

    @staticmethod
    def mesh_occupancy(vertices, faces, resolution: int = OCC_RES) -> tuple[np.ndarray, np.ndarray, float]:
        """(occupancy (32, 32, 32) bool, centre, half extent) of a mesh (object frame, metres)
        re-centred and fitted into the normalised cube as in training: what the shape encoder
        reads and the shape decoder should give back (at another `resolution`: the same fit, finer)."""
        v = np.asarray(vertices, np.float64)
        lo, hi = v.min(axis=0), v.max(axis=0)
        c, half = 0.5 * (lo + hi), max(0.5 * float((hi - lo).max()), 1e-9)
        return mesh_to_cell_occupancy((v - c) / half * FIT, np.asarray(faces), resolution, half_size=1.0), c, half

    def encode_candidate(self, vertices, faces, layout, mask_or_box, K) -> torch.Tensor:
        """Flow target x_1 (1, D) of any mesh + layout, e.g. a chosen candidate read back from
        its GLB (`modelzoo.mesh.glb.read_glb`) or an artist's upload.

        The mesh (object frame, metres) is re-centred and re-fitted into the normalised cube
        as in training; the layout absorbs the change so the posed object stays where it was.
        `mask_or_box`: the object's mask (H x W) or its crop box (u, v, size).
        """
        occ, c, half = self.mesh_occupancy(vertices, faces)
        R = quat_to_matrix(layout.rotation)
        s = float(np.mean(layout.scale))
        t = np.asarray(layout.translation, np.float64) + R @ (s * c)
        s_eff = s * half / (FIT * NOMINAL_HALF_SIZE)
        m = np.asarray(mask_or_box)
        box = mask_box(m) if m.ndim == 2 else m.astype(np.float64)
        return self.encode_target(occ[None], R[None], t[None], np.array([s_eff]), box[None], K)

    def decode(self, x1: torch.Tensor, box, K):
        """x_1 (B, D) -> (occupancy logits (B, 32, 32, 32), R (B,3,3), t (B,3), s (B,)) numpy for layout."""
        raw = self.denormalise(x1)
        logits = self.shape_decoder(raw[:, : self.latent_dim])
        lay = raw[:, self.latent_dim:].double().numpy()
        R, t, s = decode_layout(lay, np.broadcast_to(np.asarray(box, np.float64), (len(lay), 3)), np.asarray(K))
        return logits, R, t, s

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str, meta: dict | None = None) -> None:
        state = {k: (v.half() if v.is_floating_point() and not k.startswith("x_") else v)
                 for k, v in self.state_dict().items()}
        torch.save({"format": "modelzoo.builtin/1", "config": self.config, "state_dict": state,
                    "meta": meta or {}}, path)

    @staticmethod
    def _read(path) -> dict:
        """torch.load with weights_only: a pickle that names other callables than tensors' is refused
        without running them."""
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or ckpt.get("format") != "modelzoo.builtin/1":
            raise ValueError(f"{path if isinstance(path, str) else 'the file'} is not a built-in model checkpoint "
                             "(no 'format': 'modelzoo.builtin/1')")
        return ckpt

    @classmethod
    def check(cls, path) -> None:
        """ValueError (or torch's own) unless `path` (a file path or a binary file object) holds weights
        `load` takes. The network its config names is built on the meta device, so a config asking for
        a huge network allocates nothing before its shapes are compared with the file's tensors."""
        ckpt = cls._read(path)
        config, state = ckpt.get("config"), ckpt.get("state_dict")
        if not isinstance(config, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 65536 for v in config.values()):
            raise ValueError(f"its 'config' is not a mapping of sizes from 0 to 65536: {str(config)[:200]}")
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError("its 'state_dict' is not a mapping of tensors")
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in cls(**config).state_dict().items()}
        found = {k: tuple(v.shape) for k, v in state.items()}
        if found != expected:
            wrong = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
            raise ValueError(f"its state_dict does not fit its config {config}: missing "
                             f"{sorted(expected.keys() - found.keys())[:3]}, unexpected "
                             f"{sorted(found.keys() - expected.keys())[:3]}, other shapes {wrong[:3]}")

    @classmethod
    def load(cls, path) -> "BuiltinModel":
        """From a file path or a binary file object (`_read`: weights only)."""
        ckpt = cls._read(path)
        model = cls(**ckpt["config"])
        model.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
        model.eval()
        model.meta = ckpt.get("meta", {})
        return model
