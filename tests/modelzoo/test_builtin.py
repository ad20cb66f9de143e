"""The built-in model and its generator, on the committed bootstrap checkpoint."""
import copy
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from modelzoo import mesh
from modelzoo.builtin import BuiltinGenerator, flow_dpo_loss
from modelzoo.builtin.data import mask_box
from modelzoo.builtin.layout import decode_layout, encode_layout
from modelzoo.generators.base import GenerationRequest, Generator
from modelzoo.metrics import voxel_iou
from modelzoo.synth import sample_scene
from modelzoo.synth.rotations import quat_to_matrix

pytestmark = []

import os

BOOTSTRAP = Path(os.environ.get("MODELZOO_TEST_CHECKPOINT")
                 or Path(__file__).resolve().parents[2] / "modelzoo" / "checkpoints" / "bootstrap.pt")


@pytest.fixture(scope="module")
def gen():
    assert BOOTSTRAP.exists(), "the bootstrap checkpoint is committed with the code"
    return BuiltinGenerator.from_checkpoint(BOOTSTRAP)


@pytest.fixture(scope="module")
def scene():
    return sample_scene(900_000_007)  # a gold-set scene (never trained on)


def request(s, seeds, steps=4, **kw):
    return GenerationRequest(image=s.image, mask=s.mask, seeds=seeds, steps=steps, intrinsics=s.intrinsics, **kw)


def test_layout_parameters_roundtrip():
    scenes = [sample_scene(i) for i in range(6)]
    R = np.stack([quat_to_matrix(s.layout.rotation) for s in scenes])
    t = np.array([s.layout.translation for s in scenes])
    sc = np.array([s.layout.scale[0] for s in scenes])
    box = np.stack([mask_box(s.mask) for s in scenes])
    K = np.stack([s.intrinsics for s in scenes])
    R2, t2, s2 = decode_layout(encode_layout(R, t, sc, box, K), box, K)
    assert np.allclose(R, R2, atol=1e-9) and np.allclose(t, t2, atol=1e-9) and np.allclose(sc, s2)


def test_candidates_follow_the_contract(gen, scene):
    assert isinstance(gen, Generator) and gen.backend == "builtin"
    out = gen.generate(request(scene, [0, 1, 2]))
    assert [c.seed for c in out] == [0, 1, 2]
    for c in out:
        assert c.vertices.dtype == np.float32 and c.vertices.shape[1] == 3
        assert c.faces.dtype == np.int32 and c.faces.max() < len(c.vertices)
        assert c.vertex_colors.dtype == np.uint8 and c.vertex_colors.shape == (len(c.vertices), 4)
        q = np.asarray(c.layout.rotation)
        assert abs(np.linalg.norm(q) - 1) < 1e-6
        assert c.layout.translation[2] < 0 and c.layout.scale[0] > 0
        assert c.preview_png.startswith(b"\x89PNG")
        assert set(c.timings) == {"model", "meshing", "preview", "splatting"}
        assert np.abs(c.vertices).max() < 0.25  # object frame, metres (nominal half-size 0.2 m)
        # the splat: Gaussians on the mesh's surface, in the mesh's frame
        assert len(c.splat) == 4096 and np.abs(c.splat.positions).max() < 0.25


def test_same_seed_same_candidate(gen, scene):
    a = gen.generate(request(scene, [5]))[0]
    b = gen.generate(request(scene, [5]))[0]
    assert np.array_equal(a.vertices, b.vertices) and a.layout == b.layout
    # A seed's candidate does not depend on the other seeds of the batch.
    c = gen.generate(request(scene, [9, 5]))[1]
    assert np.allclose(c.layout.translation, a.layout.translation, atol=1e-4)


def test_different_seeds_give_diverse_candidates(gen, scene):
    pred = gen.predict(scene.image, scene.mask, list(range(8)), steps=4, intrinsics=scene.intrinsics)
    occ = pred["logits"] > 0
    ious = [voxel_iou(occ[i], occ[j]) for i in range(8) for j in range(i + 1, 8)]
    assert min(ious) < 0.95  # visibly different shapes...
    assert np.mean(ious) > 0.3  # ...of the same object
    assert np.ptp(pred["s"]) > 0.02 or np.ptp(pred["t"][:, 2]) > 0.02


@pytest.mark.parametrize("steps", [1, 4, 25])
def test_sampling_steps_are_configurable(gen, scene, steps):
    out = gen.generate(request(scene, [0, 1], steps=steps))
    assert len(out) == 2 and all(len(c.faces) > 50 for c in out)


def test_batch_of_eight_is_fast(gen, scene):
    gen.generate(request(scene, list(range(8))))
    t0 = time.perf_counter()
    out = gen.generate(request(scene, list(range(8))))
    total = time.perf_counter() - t0
    assert total < 3.0, f"{total:.3f}s for 8 candidates"  # ~0.1 s on an idle 2-core machine
    assert sum(c.timings["model"] for c in out) < 2.0


def test_inference_runs_on_the_generators_threads_and_restores_the_process_setting(gen, scene):
    seen = []
    hook = gen.model.image_encoder.register_forward_hook(lambda *a: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    try:
        outputs = []
        for process_threads in (2, 1):
            torch.set_num_threads(process_threads)
            outputs.append(gen.generate(request(scene, [4, 7])))
            assert torch.get_num_threads() == process_threads
    finally:
        hook.remove()
        torch.set_num_threads(before)
    assert seen == [gen.threads, gen.threads]
    # a seed's candidate does not depend on the process's thread setting
    for a, b in zip(*outputs):
        assert np.array_equal(a.vertices, b.vertices) and a.layout == b.layout
        assert np.array_equal(a.vertex_colors, b.vertex_colors) and a.preview_png == b.preview_png
    x1 = gen.predict(scene.image, scene.mask, [4], steps=1, intrinsics=scene.intrinsics)["x1"]
    assert not x1.is_inference()  # usable by autograd callers


def test_target_encoding_roundtrip(gen, scene):
    model = gen.model
    R = quat_to_matrix(scene.layout.rotation)[None]
    box = mask_box(scene.mask)[None]
    with torch.no_grad():
        x1 = model.encode_target(scene.occupancy[None], R, np.array([scene.layout.translation]),
                                 np.array([scene.layout.scale[0]]), box, scene.intrinsics)
        logits, R2, t2, s2 = model.decode(x1, box[0], scene.intrinsics)
    assert x1.shape == (1, model.flow_vector_dim)
    assert np.allclose(R2[0], R[0], atol=1e-4) and np.allclose(t2[0], scene.layout.translation, atol=1e-4)
    assert voxel_iou(logits[0].numpy() > 0, scene.occupancy) > 0.6  # the shape autoencoder


def test_candidate_glb_becomes_a_training_target(gen, scene):
    c = gen.generate(request(scene, [3]))[0]
    v, f, _ = mesh.read_glb(mesh.glb_bytes(c.vertices, c.faces, c.vertex_colors))
    with torch.no_grad():
        x1 = gen.model.encode_candidate(v, f, c.layout, scene.mask, scene.intrinsics)
        _, R2, t2, s2 = gen.model.decode(x1, mask_box(scene.mask), scene.intrinsics)
    assert np.allclose(R2[0], quat_to_matrix(c.layout.rotation), atol=1e-4)
    assert np.linalg.norm(t2[0] - np.asarray(c.layout.translation)) < 0.05 * abs(c.layout.translation[2])


@pytest.mark.parametrize("seed", [900_000_001, 900_000_002, 900_000_003])
def test_a_mesh_of_the_true_shape_trains_toward_the_true_shape(gen, seed):
    """An artist's mesh of exactly the photographed shape must become the same flow target as the
    shape itself (as pretraining encoded it): a fatter target would teach every SFT round to
    inflate its shapes."""
    s = sample_scene(seed, domain="household")
    v, f = s.gt_mesh(96)
    box = mask_box(s.mask)[None]
    with torch.no_grad():
        from_mesh = gen.model.encode_candidate(v, f, s.layout, s.mask, s.intrinsics)
        from_shape = gen.model.encode_target(s.occupancy[None], quat_to_matrix(s.layout.rotation)[None],
                                             np.array([s.layout.translation]), np.array([s.layout.scale[0]]),
                                             box, s.intrinsics)
        occ_mesh = gen.model.decode(from_mesh, box[0], s.intrinsics)[0][0].numpy() > 0
        occ_shape = gen.model.decode(from_shape, box[0], s.intrinsics)[0][0].numpy() > 0
    assert voxel_iou(occ_mesh, occ_shape) > 0.9
    assert abs(occ_mesh.sum() / occ_shape.sum() - 1) < 0.08


def test_dpo_loss_runs_on_the_model(gen, scene):
    model = copy.deepcopy(gen.model)
    box = mask_box(scene.mask)
    from modelzoo.builtin.data import crop_single
    from modelzoo.builtin.layout import box_features

    cond = model.encode_condition(crop_single(scene.image, scene.mask, box),
                                  torch.from_numpy(box_features(box[None], scene.intrinsics)))
    xw, xl = torch.randn(1, model.flow_vector_dim), torch.randn(1, model.flow_vector_dim)
    loss, _ = flow_dpo_loss(model, gen.model, cond, xw, xl, beta=100.0)
    assert loss.item() == pytest.approx(math.log(2.0), abs=1e-5)
    loss.backward()
    assert any(p.grad is not None for p in model.velocity_net.parameters())


def test_depth_map_resolves_scale(gen):
    err_plain, err_depth = [], []
    for i in range(6):
        s = sample_scene(900_000_100 + i)
        a = gen.generate(request(s, [0]))[0]
        b = gen.generate(request(s, [0], depth=s.depth))[0]
        gt = np.asarray(s.layout.translation)
        err_plain.append(np.linalg.norm(np.asarray(a.layout.translation) - gt))
        err_depth.append(np.linalg.norm(np.asarray(b.layout.translation) - gt))
    assert np.mean(err_depth) < np.mean(err_plain)


def test_bootstrap_beats_the_baseline_on_gold_scenes():
    from modelzoo.evaluate import evaluate

    r = evaluate(str(BOOTSTRAP), n=12, log=None)
    assert r["model"]["voxel_iou@64"] > r["baseline_sphere"]["voxel_iou@64"] + 0.05
    assert r["model"]["chamfer"] < r["baseline_sphere"]["chamfer"]
