"""The retrieval backend: a library of shapes, the nearest ones to a photo's object at a
fitted layout, through the registry like any backend."""
import numpy as np
import pytest

from modelzoo.evaluate import baseline_candidate, score
from modelzoo.generators.base import GenerationRequest, GeneratorError
from modelzoo.generators.registry import load_generator, weights_check
from modelzoo.generators.retrieval import (
    RetrievalGenerator,
    build_library,
    main,
    read_library,
    save_library,
    synthetic_meshes,
)
from modelzoo.mesh import glb_bytes
from modelzoo.synth import sample_scene

SEED = 123_000  # library shapes are the shapes of scenes SEED..SEED+5


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    path = tmp_path_factory.mktemp("retrieval") / "lib.npz"
    save_library(build_library(synthetic_meshes("household", 6, SEED), log=None), str(path))
    return path


def test_returns_library_shapes_nearest_to_the_photo_at_a_fitted_layout(library):
    gen = load_generator(backend="retrieval", path=str(library))
    assert isinstance(gen, RetrievalGenerator) and gen.backend == "retrieval"
    s = sample_scene(SEED + 3, domain="household")  # its shape is in the library
    ranked, _ = gen.rank(s.mask, 6)
    assert 3 in [shape for shape, _, _ in ranked[:2]]
    assert [iou for *_, iou in ranked] == sorted([iou for *_, iou in ranked], reverse=True)
    cands = gen.generate(GenerationRequest(image=s.image, mask=s.mask, seeds=[0, 1, 2], intrinsics=s.intrinsics))
    assert [c.seed for c in cands] == [0, 1, 2]
    assert len({len(c.vertices) for c in cands}) == 3  # three distinct shapes
    gv, gf = s.gt_mesh(64)
    best = max(score(c.vertices, c.faces, c.layout, gv, gf, s.layout)["voxel_iou@64"] for c in cands)
    sphere = score(*baseline_candidate(s), gv, gf, s.layout)["voxel_iou@64"]
    assert best > 0.75 and best > sphere + 0.2
    # placed where the object is: the distance is the library's size over the crop's
    t, t_gt = np.asarray(cands[0].layout.translation), np.asarray(s.layout.translation)
    assert np.linalg.norm(t / np.linalg.norm(t) - t_gt / np.linalg.norm(t_gt)) < 0.1
    # a depth map resolves the scale: the distance comes out within 10%
    with_depth = gen.generate(GenerationRequest(image=s.image, mask=s.mask, seeds=[0], depth=s.depth,
                                                intrinsics=s.intrinsics))[0]
    assert abs(np.linalg.norm(with_depth.layout.translation) / np.linalg.norm(t_gt) - 1) < 0.1
    assert cands[0].preview_png.startswith(b"\x89PNG") and cands[0].vertex_colors.shape == (len(cands[0].vertices), 4)


def test_refuses_what_is_not_a_library(library, tmp_path):
    with pytest.raises(GeneratorError, match="not a retrieval library"):
        weights_check("retrieval", b"PK\x03\x04 not really a zip")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(GeneratorError, match="it lacks format"):
        read_library(str(tmp_path / "other.npz"))
    weights_check("retrieval", library.read_bytes())  # the real one passes
    with pytest.raises(GeneratorError, match="needs its library file"):
        load_generator(backend="retrieval", path=None)
    s = sample_scene(SEED, domain="household")
    with pytest.raises(GeneratorError, match="empty mask"):
        RetrievalGenerator.from_file(str(library)).generate(
            GenerationRequest(image=s.image, mask=np.zeros_like(s.mask), seeds=[0]))


def test_builds_a_library_from_a_folder_of_glbs(tmp_path, capsys):
    import trimesh

    (tmp_path / "shapes").mkdir()
    for name, mesh in (("box", trimesh.creation.box((0.2, 0.1, 0.1))), ("ball", trimesh.creation.icosphere(2, 0.1))):
        (tmp_path / "shapes" / f"{name}.glb").write_bytes(glb_bytes(mesh.vertices, mesh.faces, None))
    assert main(["build", "--glb-dir", str(tmp_path / "shapes"), "--out", str(tmp_path / "lib.npz")]) == 0
    lib = read_library(str(tmp_path / "lib.npz"))
    assert sorted(lib["names"]) == ["ball", "box"] and lib["descriptors"].shape[:2] == (2, len(lib["views"]))
    s = sample_scene(SEED, domain="household")
    from PIL import Image

    Image.fromarray(s.mask.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    Image.fromarray(s.image).save(tmp_path / "photo.png")
    assert main(["query", "--library", str(tmp_path / "lib.npz"), "--image", str(tmp_path / "photo.png"),
                 "--mask", str(tmp_path / "mask.png"), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "silhouette IoU" in out and "ball" in out and "box" in out
