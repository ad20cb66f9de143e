"""Candidates of every representation for the browser tests and bench/workbench.py, made as the
real backends hand them over and stored by the engine's own encoding step
(`modelzoo.representations.encode_candidate` + `engine.rounds.generate.candidate_files_store`):

* ``textured``: a TRELLIS.2 / Hunyuan3D-style GLB: UVs, a PBR material with a base-colour texture
  (a checker of two known colours, MAGENTA and GREEN, that the pixel checks look for) and a
  metallic-roughness texture; no vertex colours;
* ``splat``: a SAM 3D-style Gaussian splat alone (flat Gaussians on the object's surface, ORANGE);
* ``mesh+splat``: vertex-coloured mesh arrays and a splat of the same surface (what the built-in
  model makes).

Each shape is the photographed object's occupancy, perturbed per candidate and meshed, as in
conftest._candidate_meshes; layouts sit around the true one.
"""
from __future__ import annotations

import io

import numpy as np

MAGENTA = (225, 30, 205)
GREEN = (40, 200, 60)
ORANGE = (245, 140, 30)


def checker_png(size: int = 256, squares: int = 8) -> bytes:
    """A base-colour texture: MAGENTA and GREEN squares."""
    from PIL import Image

    ij = (np.arange(size) * squares // size)
    odd = (ij[:, None] + ij[None, :]) % 2 == 1
    img = np.where(odd[..., None], np.array(GREEN, np.uint8), np.array(MAGENTA, np.uint8)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def textured_glb(vertices: np.ndarray, faces: np.ndarray, *, texture_px: int = 256) -> bytes:
    """A PBR GLB of the mesh: cylindrical UVs, the checker as base colour, a metallic-roughness
    texture (G roughness 0.6, B metalness 0), written by trimesh."""
    import trimesh
    from PIL import Image

    v = np.asarray(vertices, np.float64)
    c = 0.5 * (v.min(axis=0) + v.max(axis=0))
    u = (np.arctan2(v[:, 2] - c[2], v[:, 0] - c[0]) / (2 * np.pi)) % 1.0
    h = (v[:, 1] - v[:, 1].min()) / max(1e-9, np.ptp(v[:, 1]))
    uv = np.stack([u, h], axis=1)
    base = Image.open(io.BytesIO(checker_png(texture_px)))
    mr = Image.fromarray(np.dstack([np.zeros((64, 64), np.uint8), np.full((64, 64), 153, np.uint8),
                                    np.zeros((64, 64), np.uint8)]))
    material = trimesh.visual.material.PBRMaterial(
        name="checker", baseColorTexture=base, metallicRoughnessTexture=mr, metallicFactor=1.0, roughnessFactor=1.0)
    mesh = trimesh.Trimesh(vertices=v, faces=np.asarray(faces), process=False,
                           visual=trimesh.visual.TextureVisuals(uv=uv, material=material))
    return mesh.export(file_type="glb")


def make_representation_items(project, *, kinds: list[str], count: int = 1, first_seed: int = 71,
                              gaussians: int = 6000, judged: str | None = None, texture_px: int = 256) -> list:
    """`count` ready items of `project` whose candidates are of `kinds` (one candidate per entry,
    in order: "textured", "splat", "mesh+splat"), stored as the generation step stores them."""
    from annotation.models import Item, ItemState
    from annotation.states import item_transition
    from engine.rounds.generate import candidate_files_store
    from engine.services import round_current
    from modelzoo.generators.base import CandidateOutput
    from modelzoo.models import Candidate, Checkpoint
    from modelzoo.representations import encode_candidate
    from modelzoo.splats import SH_C0, gaussians_on_surface
    from modelzoo.synth.scene import sample_scene
    from tests.browser.conftest import _candidate_meshes, _png

    from engine.ingest.services import ingest_item
    from engine.ingest.validation import ItemInput, MaskInput

    project.candidates_per_item = len(kinds)
    fields = ["candidates_per_item"]
    if judged:
        project.judged_representation = judged
        fields.append("judged_representation")
    project.save(update_fields=fields)
    checkpoints = {}
    for kind in set(kinds):
        checkpoints[kind], _ = Checkpoint.objects.get_or_create(
            name=f"fixture-{kind}", version="1", defaults={"backend": {"textured": "trellis2", "splat": "sam3d_objects"}
                                                           .get(kind, "builtin")})
    rnd = round_current(project=project)
    items = []
    for k in range(count):
        sample = sample_scene(first_seed + k, size=160)
        image = ingest_item(project=project, item=ItemInput(
            name=f"repr{first_seed + k}.png", image_bytes=_png(sample.image), intrinsics=sample.intrinsics.tolist(),
            masks=[MaskInput(source_name="object", label="object", array=sample.mask)],
        )).image
        item = Item.objects.create(project=project, round=rnd, mask=image.masks.first())
        meshes = _candidate_meshes(sample, len(kinds), seed=2000 + k)
        for i, (kind, (v, f, colours, layout)) in enumerate(zip(kinds, meshes)):
            if kind == "textured":
                out = CandidateOutput(seed=i, glb=textured_glb(v, f, texture_px=texture_px), layout=layout)
            else:
                g = gaussians_on_surface(v, f, colours, gaussians, seed=i)
                if kind == "splat":
                    g.sh_dc = np.tile(((np.array(ORANGE) / 255.0 - 0.5) / SH_C0).astype(np.float32), (len(g), 1))
                    out = CandidateOutput(seed=i, splat=g, layout=layout)
                else:
                    out = CandidateOutput(seed=i, vertices=v, faces=f, vertex_colors=colours, splat=g, layout=layout)
            files = encode_candidate(out)
            Candidate.objects.create(
                item=item, checkpoint=checkpoints[kind], seed=i, steps=1, layout=files.layout,
                num_vertices=files.num_vertices, num_faces=files.num_faces, num_gaussians=files.num_gaussians,
                textured=files.textured, received=files.received, **candidate_files_store(files),
            )
        items.append(item_transition(item=item, to=ItemState.READY))
    return items
