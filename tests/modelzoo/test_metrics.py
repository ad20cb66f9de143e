"""Metrics: perfect for identical shapes and poses, worse for different ones."""
import numpy as np
import pytest
import trimesh

from modelzoo import metrics
from modelzoo.generators.base import Layout
from modelzoo.synth import sample_scene
from modelzoo.synth.rotations import axis_angle, matrix_to_quat

pytestmark = []


@pytest.fixture(scope="module")
def two_shapes():
    a, b = sample_scene(1), sample_scene(2)
    return a, a.gt_mesh(48), b, b.gt_mesh(48)


def test_identical_shapes_are_perfect(two_shapes):
    _, (v, f), _, _ = two_shapes
    m = metrics.shape_metrics(v, f, v, f, resolution=32)
    assert m["chamfer"] == 0.0
    assert m["fscore@0.01"] == 1.0
    assert m["voxel_iou@32"] == 1.0


def test_normalisation_ignores_position_and_size(two_shapes):
    _, (v, f), _, _ = two_shapes
    moved = v * 3.7 + np.array([1.0, -2.0, 0.5], np.float32)
    m = metrics.shape_metrics(moved, f, v, f, resolution=32)
    assert m["chamfer"] < 1e-5 and m["voxel_iou@32"] == 1.0


def test_different_shapes_score_worse(two_shapes):
    _, (va, fa), _, (vb, fb) = two_shapes
    m = metrics.shape_metrics(va, fa, vb, fb, resolution=32)
    assert m["chamfer"] > 0.05
    assert m["fscore@0.01"] < 0.5
    assert m["voxel_iou@32"] < 0.8


def test_the_annotators_voxels_are_the_ones_shape_metrics_compares(two_shapes):
    a, (va, fa), b, (vb, fb) = two_shapes
    Ra, Rb = a.rotation_matrix, b.rotation_matrix
    once = metrics.voxel_iou(metrics.camera_occupancy(va, fa, Ra), metrics.camera_occupancy(vb, fb, Rb))
    m = metrics.shape_metrics(va, fa, vb, fb, pred_rotation=Ra, gt_rotation=Rb, n_points=500, resolution=32)
    assert once == m["voxel_iou@32"] < 1


def test_expected_win_rate_judges_as_the_simulated_annotators_do():
    # within the margin: equal, half a win; beyond it the better wins, flipped one time in ten
    assert metrics.expected_win_rate([[0.50, 0.51]], [[0.505]], margin=0.02, noise=0.1) == 0.5
    assert metrics.expected_win_rate([[0.8]], [[0.5]], margin=0.02, noise=0.1) == pytest.approx(0.9)
    assert metrics.expected_win_rate([[0.5]], [[0.8]], margin=0.02, noise=0.1) == pytest.approx(0.1)
    # scene by scene: a better candidate on one scene does not meet the other scene's candidates
    assert metrics.expected_win_rate([[0.8], [0.1]], [[0.5], [0.05]], margin=0.02, noise=0.0) == 1.0
    # every candidate against every candidate of the same scene: 0.8 beats both, 0.3 loses to 0.5
    assert metrics.expected_win_rate([[0.8, 0.3]], [[0.5, 0.2]], margin=0.02, noise=0.0) == 0.75
    with pytest.raises(ValueError, match="no comparisons"):
        metrics.expected_win_rate([], [], margin=0.02, noise=0.1)


def test_voxel_iou_of_nested_cubes():
    big = trimesh.creation.box(extents=(2, 2, 2))
    small = trimesh.creation.box(extents=(1, 1, 1))
    occ_b = metrics.mesh_to_occupancy(big.vertices, big.faces, 32, half_size=1.0)
    occ_s = metrics.mesh_to_occupancy(small.vertices, small.faces, 32, half_size=1.0)
    # Surface cells count as inside, so the small cube grows by up to one cell layer: 16^3..18^3.
    assert (16 / 32) ** 3 <= metrics.voxel_iou(occ_b, occ_s) <= (18 / 32) ** 3


def test_rotation_error_and_symmetry():
    q0 = (1.0, 0.0, 0.0, 0.0)
    q90 = matrix_to_quat(axis_angle([0, 1, 0], np.pi / 2))
    assert metrics.rotation_error_deg(q0, q0) == pytest.approx(0.0, abs=1e-6)
    assert metrics.rotation_error_deg(q90, q0) == pytest.approx(90.0, abs=1e-6)
    sym = [axis_angle([0, 1, 0], np.pi / 2 * k) for k in range(1, 4)]  # a square prism
    assert metrics.rotation_error_deg(q90, q0, symmetries=sym) == pytest.approx(0.0, abs=1e-5)


def test_box_iou_3d():
    lay = Layout((1.0, 0, 0, 0), (0.0, 0.0, -2.0), (1.0, 1.0, 1.0))
    box = (np.array([-0.5, -0.5, -0.5]), np.array([0.5, 0.5, 0.5]))
    assert metrics.box_iou_3d(lay, box, lay, box) == pytest.approx(1.0)
    shifted = Layout((1.0, 0, 0, 0), (0.5, 0.0, -2.0), (1.0, 1.0, 1.0))
    assert metrics.box_iou_3d(lay, box, shifted, box) == pytest.approx(1 / 3, abs=0.01)
    far = Layout((1.0, 0, 0, 0), (5.0, 0.0, -2.0), (1.0, 1.0, 1.0))
    assert metrics.box_iou_3d(lay, box, far, box) == 0.0


def test_layout_metrics(two_shapes):
    a, (v, f), _, _ = two_shapes
    same = metrics.layout_metrics(v, f, a.layout, v, f, a.layout)
    assert same["add_s"] == 0.0 and same["add_s@0.1"] == 1.0 and same["box_iou_3d"] == pytest.approx(1.0)
    t = np.asarray(a.layout.translation) + np.array([0.3, 0.0, 0.0])
    moved = Layout(a.layout.rotation, tuple(t), a.layout.scale)
    off = metrics.layout_metrics(v, f, moved, v, f, a.layout)
    assert off["add_s"] > 0.1 and off["add_s@0.1"] == 0.0 and off["box_iou_3d"] < 0.5
    assert off["translation_error_m"] == pytest.approx(0.3)
