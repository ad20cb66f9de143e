"""Procedural synthetic objects, a numpy SDF renderer and a seeded scene sampler.

    from modelzoo.synth import sample_scene
    s = sample_scene(7)      # SynthSample: image, mask, depth, intrinsics, layout, occupancy
    v, f = s.gt_mesh()       # ground-truth mesh, object frame, metres
"""
from modelzoo.synth.scene import IMAGE_SIZE, OCC_RES, SynthSample, sample_scene  # noqa: F401
from modelzoo.synth.shapes import FIT, NOMINAL_HALF_SIZE, Shape, gt_mesh, occupancy, random_shape  # noqa: F401
