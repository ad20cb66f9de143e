"""The synthetic data: deterministic from a seed, varied across seeds, consistent geometry."""
import time

import numpy as np
import pytest

from modelzoo.synth import NOMINAL_HALF_SIZE, sample_scene
from modelzoo.synth.rotations import quat_to_matrix

pytestmark = []


def test_same_seed_same_scene():
    a, b = sample_scene(123), sample_scene(123)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.mask, b.mask)
    assert np.array_equal(a.occupancy, b.occupancy)
    assert a.layout == b.layout
    va, fa = a.gt_mesh(48)
    vb, fb = b.gt_mesh(48)
    assert np.array_equal(va, vb) and np.array_equal(fa, fb)


def test_different_seeds_give_different_objects():
    scenes = [sample_scene(s) for s in range(12)]
    occs = {s.occupancy.tobytes() for s in scenes}
    assert len(occs) == 12
    kinds = {s.shape.describe() for s in scenes}
    assert len(kinds) >= 5
    rotations = np.array([s.layout.rotation for s in scenes])
    assert np.ptp(rotations, axis=0).max() > 0.5


def test_sample_contents():
    s = sample_scene(5)
    assert s.image.shape == (128, 128, 3) and s.image.dtype == np.uint8
    assert s.mask.dtype == bool and s.mask.sum() >= 40
    assert (s.depth[s.mask] > 0).all()  # every visible object pixel has a depth
    assert s.occupancy.shape == (32, 32, 32) and 0.01 < s.occupancy.mean() < 0.9
    assert s.intrinsics.shape == (3, 3)
    assert s.layout.translation[2] < 0  # in front of the camera (looking down -Z)


def test_gt_mesh_is_closed_and_object_sized():
    import trimesh

    for seed in (1, 2, 3):
        s = sample_scene(seed)
        v, f = s.gt_mesh(48)
        m = trimesh.Trimesh(v, f, process=False)
        assert m.is_watertight and m.volume > 0
        extent = np.ptp(v, axis=0).max() * s.layout.scale[0]
        assert 0.1 < extent < 0.7  # metres
        assert np.abs(v).max() <= NOMINAL_HALF_SIZE * 1.001


def test_mask_matches_projected_ground_truth():
    """The layout convention p_cam = t + R (s p) and the pinhole projection agree with the
    rendered mask: the projected ground-truth mesh covers the mask's bounding box."""
    for seed in range(20):
        s = sample_scene(seed)
        if s.occluded:
            continue
        v, _ = s.gt_mesh(64)
        R = quat_to_matrix(s.layout.rotation)
        p = np.asarray(s.layout.translation) + (v * s.layout.scale[0]) @ R.T
        K = s.intrinsics
        u = K[0, 2] + K[0, 0] * p[:, 0] / -p[:, 2]
        vv = K[1, 2] - K[1, 1] * p[:, 1] / -p[:, 2]
        ys, xs = np.nonzero(s.mask)
        tol = 1.5 + 0.02 * max(np.ptp(xs), np.ptp(ys))  # pixel edges + marching-cubes shrinkage
        assert abs(u.min() - xs.min()) < tol and abs(u.max() - (xs.max() + 1)) < tol
        assert abs(vv.min() - ys.min()) < tol and abs(vv.max() - (ys.max() + 1)) < tol


def test_fast_enough_for_a_training_set():
    t0 = time.perf_counter()
    for seed in range(40):
        sample_scene(1000 + seed)
    per = (time.perf_counter() - t0) / 40
    assert per < 0.15, f"{per * 1e3:.1f} ms per scene"  # ~11 ms on an idle 2-core machine


def test_household_domain_is_its_own_distribution():
    """The simulated project's target domain: everyday objects in fixed arrangements, upright,
    deterministic from the seed; the same seed gives another object than the pretraining domain."""
    scenes = [sample_scene(s, domain="household") for s in range(24)]
    again = sample_scene(3, domain="household")
    assert np.array_equal(again.image, scenes[3].image) and again.layout == scenes[3].layout
    assert {s.shape.describe() for s in scenes} <= {
        "cylinder+torus", "cylinder+cone+cylinder", "cylinder", "cone+cylinder", "cylinder+cylinder+cone",
        "box+cylinder+cylinder", "cylinder+cone", "box", "sphere"}
    assert len({s.shape.describe() for s in scenes}) >= 6
    for s in scenes:
        assert s.mask.sum() >= 40 and 0.005 < s.occupancy.mean() < 0.9
        # upright: every part's axis is the object's vertical axis, except a mug's handle
        for p in s.shape.primitives:
            assert np.allclose(p.rotation, np.eye(3)) or p.kind == "torus"
    assert sample_scene(3).occupancy.tobytes() != scenes[3].occupancy.tobytes()


def test_unknown_domain_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown scene domain 'kitchen'"):
        sample_scene(1, domain="kitchen")
