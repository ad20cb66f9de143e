"""Layout <-> flow-vector parameters, relative to the crop box (batched numpy).

The network sees a square crop around the mask, so layout is expressed in terms that the
crop determines (as in allocentric pose estimators):

* rotation: 6D (first two columns, Zhou et al. 2019) of the *allocentric* rotation
  ``R_ray(box)^T @ R``, where ``R_ray`` turns the optical axis onto the ray through the
  crop centre: an object looks the same wherever it sits in the image;
* ``du, dv``: projected object centre minus crop centre, in crop sizes;
* ``app = log(s / depth) - log(box / fx)``: apparent size relative to the crop;
* ``log_s``: absolute log scale, which a single image leaves ambiguous (with depth, see
  `BuiltinGenerator`), so seeds sample it from the learnt prior.

Boxes are (u, v, size) in pixels; K is 3x3 (one per row, or shared).
"""
from __future__ import annotations

import numpy as np

LAYOUT_DIM = 10


def rays_rotation(d: np.ndarray) -> np.ndarray:
    """Batched rotations (B, 3, 3) taking (0, 0, -1) onto unit directions d (B, 3), no roll."""
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    axis = np.stack([d[:, 1], -d[:, 0], np.zeros(len(d))], axis=1)  # (0,0,-1) x d
    s = np.linalg.norm(axis, axis=1)
    c = -d[:, 2]
    angle = np.arctan2(s, c)
    axis = axis / np.maximum(s, 1e-12)[:, None]
    Kx = np.zeros((len(d), 3, 3))
    Kx[:, 0, 1], Kx[:, 0, 2] = -axis[:, 2], axis[:, 1]
    Kx[:, 1, 0], Kx[:, 1, 2] = axis[:, 2], -axis[:, 0]
    Kx[:, 2, 0], Kx[:, 2, 1] = -axis[:, 1], axis[:, 0]
    sa, ca = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3)[None] + sa * Kx + (1 - ca) * (Kx @ Kx)


def box_ray(box: np.ndarray, K: np.ndarray) -> np.ndarray:
    K = np.broadcast_to(K, (len(box), 3, 3))
    x = (box[:, 0] - K[:, 0, 2]) / K[:, 0, 0]
    y = -(box[:, 1] - K[:, 1, 2]) / K[:, 1, 1]
    return np.stack([x, y, -np.ones_like(x)], axis=1)


def rot6d_to_matrix(r6: np.ndarray) -> np.ndarray:
    a1, a2 = r6[:, 0:3], r6[:, 3:6]
    b1 = a1 / np.maximum(np.linalg.norm(a1, axis=1, keepdims=True), 1e-9)
    a2 = a2 - (b1 * a2).sum(axis=1, keepdims=True) * b1
    b2 = a2 / np.maximum(np.linalg.norm(a2, axis=1, keepdims=True), 1e-9)
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=2)  # columns


def encode_layout(R: np.ndarray, t: np.ndarray, s: np.ndarray, box: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(B,3,3), (B,3), (B,), (B,3), (3,3) or (B,3,3) -> (B, 10) layout parameters."""
    B = len(box)
    K = np.broadcast_to(K, (B, 3, 3))
    Rr = rays_rotation(box_ray(box, K))
    Ra = np.transpose(Rr, (0, 2, 1)) @ R
    r6 = np.concatenate([Ra[:, :, 0], Ra[:, :, 1]], axis=1)
    depth = -t[:, 2]
    u = K[:, 0, 2] + K[:, 0, 0] * t[:, 0] / depth
    v = K[:, 1, 2] - K[:, 1, 1] * t[:, 1] / depth
    du = (u - box[:, 0]) / box[:, 2]
    dv = (v - box[:, 1]) / box[:, 2]
    app = np.log(s / depth) - np.log(box[:, 2] / K[:, 0, 0])
    return np.concatenate([r6, du[:, None], dv[:, None], app[:, None], np.log(s)[:, None]], axis=1)


def decode_layout(p: np.ndarray, box: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of `encode_layout`: -> R (B,3,3), t (B,3), s (B,)."""
    B = len(box)
    K = np.broadcast_to(K, (B, 3, 3))
    Rr = rays_rotation(box_ray(box, K))
    R = Rr @ rot6d_to_matrix(p[:, :6])
    s = np.exp(p[:, 9])
    depth = s / np.exp(p[:, 8] + np.log(box[:, 2] / K[:, 0, 0]))
    u = box[:, 0] + p[:, 6] * box[:, 2]
    v = box[:, 1] + p[:, 7] * box[:, 2]
    t = depth[:, None] * np.stack([(u - K[:, 0, 2]) / K[:, 0, 0], -(v - K[:, 1, 2]) / K[:, 1, 1],
                                   -np.ones(B)], axis=1)
    return R, t, s


def box_features(box: np.ndarray, K: np.ndarray) -> np.ndarray:
    """What the crop cannot show: where it sits and how big it is, in focal units (B, 3)."""
    K = np.broadcast_to(K, (len(box), 3, 3))
    return np.stack([(box[:, 0] - K[:, 0, 2]) / K[:, 0, 0], (box[:, 1] - K[:, 1, 2]) / K[:, 1, 1],
                     np.log(box[:, 2] / K[:, 0, 0])], axis=1).astype(np.float32)
