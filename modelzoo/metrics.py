"""Evaluation metrics in the spirit of SAM 3D's SA-3DAO benchmark.

Shape (pose-free): both shapes are normalised to [-1, 1] (bounding box centred, largest
half-extent 1), then Chamfer distance, F-score at a threshold (0.01 as in the paper; note
that is strict on a cube of side 2) and voxel IoU on a 64^3 (configurable) grid.
Pass rotations to compare the shapes as seen from the camera (orientation counts, not
position or size).

Layout (camera frame): rotation error in degrees (optionally up to symmetries), ADD-S
(symmetric mean closest-point distance between the posed predicted and ground-truth
surfaces, metres), ADD-S@0.1 (ADD-S below 10% of the ground truth's diameter), and the
3D IoU of the oriented bounding boxes.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from modelzoo.generators.base import Layout
from modelzoo.mesh.meshing import mesh_to_occupancy, sample_surface
from modelzoo.synth.rotations import quat_to_matrix

__all__ = [
    "normalise_points", "chamfer_distance", "fscore", "voxel_iou", "shape_metrics",
    "rotation_error_deg", "posed", "add_s", "box_iou_3d", "layout_metrics",
]


def normalise_points(points: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Centre the bounding box of `reference` (default: `points`) and scale its largest
    half-extent to 1, applied to `points`."""
    ref = np.asarray(points if reference is None else reference, np.float64)
    lo, hi = ref.min(axis=0), ref.max(axis=0)
    half = max(0.5 * float((hi - lo).max()), 1e-12)
    return (np.asarray(points, np.float64) - 0.5 * (lo + hi)) / half


def _nn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from each point of a to its nearest point of b."""
    return cKDTree(b).query(a, k=1, workers=1)[0]


def chamfer_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Chamfer distance: mean nearest-neighbour L2 distance a->b plus b->a, halved."""
    return float(0.5 * (_nn(a, b).mean() + _nn(b, a).mean()))


def fscore(pred: np.ndarray, gt: np.ndarray, threshold: float = 0.01) -> tuple[float, float, float]:
    """(F-score, precision, recall) of point sets at a distance threshold."""
    precision = float((_nn(pred, gt) < threshold).mean())
    recall = float((_nn(gt, pred) < threshold).mean())
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return f, precision, recall


def voxel_iou(occ_a: np.ndarray, occ_b: np.ndarray) -> float:
    a, b = np.asarray(occ_a, bool), np.asarray(occ_b, bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _rotate(v: np.ndarray, R: np.ndarray | None) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v if R is None else v @ np.asarray(R, np.float64).T


def camera_occupancy(vertices, faces, rotation, resolution: int = 32) -> np.ndarray:
    """A mesh's voxels as oriented in the camera and normalised: the grid `shape_metrics` compares for
    `voxel_iou@resolution`, once per mesh (at 32, what the simulated annotators judge by)."""
    return mesh_to_occupancy(normalise_points(_rotate(vertices, rotation)), faces, resolution, half_size=1.0, seed=0)


def expected_win_rate(new, base, margin: float, noise: float) -> float:
    """Direct comparisons of every candidate in `new[i]` with every one in `base[i]` (scores of the
    same scene i), judged as the simulated annotators judge: "equal" within `margin` (half a win),
    else the higher score wins, flipped with probability `noise`. The expected share of wins."""
    wins = ties = total = 0
    for a, b in zip(new, base):
        d = np.subtract.outer(np.asarray(a, np.float64), np.asarray(b, np.float64))
        total += d.size
        ties += int((np.abs(d) < margin).sum())
        wins += int((d >= margin).sum())
    if total == 0:
        raise ValueError("no comparisons: give scores of at least one scene for both")
    strict, tie = wins / total, ties / total
    return strict * (1 - noise) + (1 - strict - tie) * noise + 0.5 * tie


def shape_metrics(pred_vertices, pred_faces, gt_vertices, gt_faces, *, pred_rotation=None, gt_rotation=None,
                  n_points: int = 10000, threshold: float = 0.01, thresholds: tuple[float, ...] = (0.05,),
                  resolution: int = 64, seed: int = 0) -> dict:
    """Chamfer, F-score@threshold (+ extra thresholds), voxel IoU of two meshes in [-1, 1]."""
    pv = normalise_points(_rotate(pred_vertices, pred_rotation))
    gv = normalise_points(_rotate(gt_vertices, gt_rotation))
    pp = sample_surface(pv, pred_faces, n_points, seed=seed)
    gp = sample_surface(gv, gt_faces, n_points, seed=seed)  # common random numbers: identical meshes score exactly 0
    d_pg, d_gp = _nn(pp, gp), _nn(gp, pp)
    out = {"chamfer": float(0.5 * (d_pg.mean() + d_gp.mean()))}
    for th in (threshold, *thresholds):
        p, r = float((d_pg < th).mean()), float((d_gp < th).mean())
        out[f"fscore@{th:g}"] = 0.0 if p + r == 0 else 2 * p * r / (p + r)
    occ_p = mesh_to_occupancy(pv, pred_faces, resolution, half_size=1.0, seed=seed)
    occ_g = mesh_to_occupancy(gv, gt_faces, resolution, half_size=1.0, seed=seed)
    out[f"voxel_iou@{resolution}"] = voxel_iou(occ_p, occ_g)
    return out


def rotation_error_deg(q_pred, q_gt, symmetries: list[np.ndarray] | None = None) -> float:
    """Geodesic angle between rotations given as (w, x, y, z) quaternions or 3x3 matrices.

    `symmetries`: rotations S of the ground-truth object (object frame) with
    shape(S p) == shape(p); the error is the minimum over R_gt @ S.
    """
    Rp = np.asarray(q_pred, np.float64)
    Rg = np.asarray(q_gt, np.float64)
    Rp = quat_to_matrix(Rp) if Rp.shape == (4,) else Rp
    Rg = quat_to_matrix(Rg) if Rg.shape == (4,) else Rg
    best = 180.0
    for S in [np.eye(3)] + list(symmetries or []):
        c = (np.trace(Rp.T @ (Rg @ S)) - 1.0) / 2.0
        best = min(best, float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))))
    return best


def posed(points: np.ndarray, layout: Layout) -> np.ndarray:
    """Object-frame points (metres) in the camera frame: t + R @ (s * p)."""
    R = quat_to_matrix(layout.rotation)
    return np.asarray(layout.translation) + (np.asarray(points, np.float64) * np.asarray(layout.scale)) @ R.T


def add_s(pred_points_cam: np.ndarray, gt_points_cam: np.ndarray) -> float:
    """Symmetric ADD-S (metres): mean closest-point distance, averaged over both directions."""
    return float(0.5 * (_nn(pred_points_cam, gt_points_cam).mean() + _nn(gt_points_cam, pred_points_cam).mean()))


def _diameter(points: np.ndarray) -> float:
    lo, hi = points.min(axis=0), points.max(axis=0)
    return float(np.linalg.norm(hi - lo))  # bounding-box diagonal, a cheap stand-in


def box_iou_3d(layout_a: Layout, box_a: tuple, layout_b: Layout, box_b: tuple, samples: int = 20) -> float:
    """IoU of two oriented 3D boxes: object-frame boxes (lo, hi) posed by their layouts.

    Estimated on deterministic samples^3 grids inside each box (volume of A inside B and of
    B inside A, averaged); accurate to about 1% at the default resolution.
    """
    def grid(box):
        lo, hi = np.asarray(box[0], np.float64), np.asarray(box[1], np.float64)
        c = (np.arange(samples) + 0.5) / samples
        g = np.stack(np.meshgrid(c, c, c, indexing="ij"), -1).reshape(-1, 3)
        return lo + g * (hi - lo)

    def inside(points_cam, layout, box):
        R = quat_to_matrix(layout.rotation)
        local = ((points_cam - np.asarray(layout.translation)) @ R) / np.asarray(layout.scale)
        lo, hi = np.asarray(box[0]), np.asarray(box[1])
        return ((local >= lo) & (local <= hi)).all(axis=1)

    vol = lambda layout, box: float(np.prod((np.asarray(box[1]) - np.asarray(box[0])) * np.asarray(layout.scale)))  # noqa: E731
    va, vb = vol(layout_a, box_a), vol(layout_b, box_b)
    if va <= 0 or vb <= 0:
        return 0.0
    ia = va * inside(posed(grid(box_a), layout_a), layout_b, box_b).mean()
    ib = vb * inside(posed(grid(box_b), layout_b), layout_a, box_a).mean()
    inter = 0.5 * (ia + ib)
    return float(inter / (va + vb - inter))


def layout_metrics(pred_vertices, pred_faces, pred_layout: Layout, gt_vertices, gt_faces, gt_layout: Layout, *,
                   symmetries=None, n_points: int = 5000, seed: int = 0) -> dict:
    pp = posed(sample_surface(np.asarray(pred_vertices, np.float64), pred_faces, n_points, seed=seed), pred_layout)
    gp = posed(sample_surface(np.asarray(gt_vertices, np.float64), gt_faces, n_points, seed=seed), gt_layout)
    adds = add_s(pp, gp)
    box = lambda v: (np.asarray(v).min(axis=0), np.asarray(v).max(axis=0))  # noqa: E731
    return {
        "rotation_error_deg": rotation_error_deg(pred_layout.rotation, gt_layout.rotation, symmetries),
        "add_s": adds,
        "add_s@0.1": float(adds < 0.1 * _diameter(gp)),
        "box_iou_3d": box_iou_3d(pred_layout, box(pred_vertices), gt_layout, box(gt_vertices)),
        "translation_error_m": float(np.linalg.norm(np.asarray(pred_layout.translation) - np.asarray(gt_layout.translation))),
    }
