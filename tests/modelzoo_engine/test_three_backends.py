"""One item whose candidates come from three backends at once (the built-in mesh and splat, a
TRELLIS.2-style textured GLB, a SAM 3D-style splat with its vertex-coloured mesh), and a backend's
malformed files failing the item with the reason, nothing stored."""
import pytest
from django.core.management import call_command

from annotation.models import ItemState
from engine.models import ObjectMask, Role
from engine.rounds import generate
from modelzoo.generators import registry
from modelzoo.generators.base import CandidateOutput, Layout
from modelzoo.models import Candidate, GenerationJobItem
from modelzoo.services import checkpoint_register, project_mix_set


def test_generate_with_standins_makes_one_item_of_three_backends(gen_project, member, api, fresh_registry):
    mask = ObjectMask.objects.filter(image__project=gen_project).order_by("pk").first()
    call_command("generate", project=gen_project.slug, masks=[mask.pk], candidates=6, with_standins=True,
                 inline=True)
    candidates = list(Candidate.objects.filter(item__mask=mask).select_related("checkpoint", "item"))
    assert candidates[0].item.state == ItemState.READY
    by_backend = {}
    for c in candidates:
        by_backend.setdefault(c.checkpoint.backend, []).append(c)
    assert {b: len(cs) for b, cs in by_backend.items()} == {"builtin": 2, "trellis2": 2, "sam3d_objects": 2}
    for c in by_backend["builtin"]:
        assert c.glb and c.splat and c.num_gaussians == 4096 and not c.textured
        assert c.received["mesh"]["format"] == "arrays"
    for c in by_backend["trellis2"]:
        assert c.glb and not c.splat and c.textured and c.num_gaussians == 0
        assert c.received["backend"]["layout_source"] == "mask_intrinsics"
        assert c.received["mesh"]["textures"][0]["width"] == 1024
        assert c.glb_compact.size < 1_000_000
    for c in by_backend["sam3d_objects"]:
        assert c.glb and c.splat and c.num_gaussians == 6000 and not c.textured
        assert c.received["backend"]["layout_source"] == "model"

    annotator = member(Role.ANNOTATOR)
    gen_project.judged_representation = "splat"
    gen_project.save(update_fields=["judged_representation"])
    r = api(annotator).post(f"/api/v1/projects/{gen_project.slug}/next-item")
    item = r.json()["item"]
    assert item["id"] == candidates[0].item_id and item["judged_representation"] == "splat"
    drawn = {c["id"]: c["drawn_as"] for c in item["candidates"]}
    assert {drawn[c.pk] for c in by_backend["trellis2"]} == {"textured"}  # no splat: drawn as made
    assert {drawn[c.pk] for c in by_backend["builtin"] + by_backend["sam3d_objects"]} == {"splat"}
    textured = by_backend["trellis2"][0]
    r = api(annotator).get(f"/api/v1/candidates/{textured.pk}/glb-compact")
    assert r.status_code == 200 and b"EXT_texture_webp" in b"".join(r.streaming_content)
    assert api(annotator).get(f"/api/v1/candidates/{textured.pk}/splat").status_code == 404


class ExternalUriGenerator:
    """A backend whose GLB points its buffer at a URL: a file the engine must refuse."""

    backend = "external_uri"

    def generate(self, request):
        from tests.modelzoo.test_representations import ext_buffer, pbr_glb, repack

        glb = repack(pbr_glb(64), ext_buffer)
        layout = Layout(rotation=(1, 0, 0, 0), translation=(0, 0, -2), scale=(1, 1, 1))
        return [CandidateOutput(seed=s, glb=glb, layout=layout) for s in request.seeds]


@pytest.fixture
def external_uri_backend():
    registry.register_backend("external_uri", lambda path, config: ExternalUriGenerator())
    yield
    registry._BACKENDS.pop("external_uri", None)


def test_a_malformed_glb_fails_the_item_with_its_reason_and_stores_nothing(gen_project, external_uri_backend,
                                                                           fresh_registry, settings):
    checkpoint, _ = checkpoint_register(name="remote", version="1", backend="external_uri", project=gen_project)
    project_mix_set(project=gen_project, mix=[(checkpoint, 1.0)])
    mask = ObjectMask.objects.filter(image__project=gen_project).order_by("pk").first()
    with pytest.raises(Exception) as raised:  # noqa: PT011 - what a worker's task sees
        call_command("generate", project=gen_project.slug, masks=[mask.pk], inline=True)
    assert "1 item(s) failed" in str(raised.value)
    job_item = GenerationJobItem.objects.get(item__mask=mask)
    assert job_item.state == GenerationJobItem.State.FAILED
    assert "GLB refused: buffer 0 refers to an external URI" in job_item.error
    assert job_item.item.state == ItemState.FAILED and "external URI" in job_item.item.state_reason
    assert not Candidate.objects.filter(item__mask=mask).exists()
    stored = [p for p in settings.MEDIA_ROOT.rglob("*") if p.is_file() and p.parts[-3] in ("candidates", "splats",
                                                                                            "previews")]
    assert stored == []


def test_generation_of_the_three_backends_stays_on_the_job_item_path(gen_project, fresh_registry):
    """The same through a job item, as a worker runs it (job_item_generate): the stand-ins' candidates
    are stored with their received records."""
    from engine.management.commands.generate import standins_add

    standins_add(gen_project)
    job = generate.generation_job_start(project=gen_project, candidates_per_item=3, mask_ids=[
        ObjectMask.objects.filter(image__project=gen_project).order_by("pk").first().pk])
    generate.job_item_generate(job_item_id=job.job_items.get().pk)
    backends = sorted(Candidate.objects.filter(item__project=gen_project).values_list("checkpoint__backend",
                                                                                       flat=True))
    assert backends == ["builtin", "sam3d_objects", "trellis2"]


def test_the_scene_download_keeps_meshes_and_splats(gen_project, member, api, fresh_registry):
    """Two objects of one photo judged: a SAM 3D-style winner (mesh + splat) and a TRELLIS.2-style one
    (textured mesh only); the scene's zip holds both meshes, the splat, and the splat placed in the
    camera frame by its layout."""
    import io
    import json
    import zipfile

    import numpy as np
    from plyfile import PlyData

    from modelzoo.splats import read_ply
    from modelzoo.synth.rotations import quat_to_matrix
    from tests.annotation.conftest import judgement_body

    image = ObjectMask.objects.filter(image__project=gen_project).order_by("pk").first().image
    masks = list(image.masks.order_by("pk").values_list("pk", flat=True))
    call_command("generate", project=gen_project.slug, masks=masks, candidates=6, with_standins=True, inline=True)
    annotator, viewer = member(Role.ANNOTATOR), member(Role.ANNOTATOR)  # any member may download
    want = {masks[0]: "sam3d_objects", masks[1]: "trellis2"}
    for _ in masks:
        payload = api(annotator).post(f"/api/v1/projects/{gen_project.slug}/next-item").json()
        backend = want[Candidate.objects.get(pk=payload["item"]["candidates"][0]["id"]).item.mask_id]
        best = {c.pk for c in Candidate.objects.filter(item_id=payload["item"]["id"], checkpoint__backend=backend)}
        body = judgement_body(payload, prefer=lambda king, challenger: "b" if challenger in best and king not in best
                              else "a")
        r = api(annotator).post(f"/api/v1/items/{payload['item']['id']}/judgements", body, format="json")
        assert r.status_code == 201, r.content
    r = api(viewer).get(f"/api/v1/projects/{gen_project.slug}/scenes/{image.pk}.zip")
    assert r.status_code == 200 and r["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    scene = json.loads(archive.read("scene.json"))
    by_candidate = {o["candidate"]: o for o in scene["objects"]}
    kinds = {Candidate.objects.get(pk=c).checkpoint.backend: o for c, o in by_candidate.items()}
    assert set(kinds) == {"sam3d_objects", "trellis2"}
    sam, trellis = kinds["sam3d_objects"], kinds["trellis2"]
    assert archive.read(sam["mesh"])[:4] == b"glTF" and archive.read(trellis["mesh"])[:4] == b"glTF"
    assert trellis["splat"] is None and PlyData.read(io.BytesIO(archive.read(sam["splat"])))["vertex"].count == 6000
    placed = read_ply(archive.read("scene_splats.ply"))
    local = read_ply(archive.read(sam["splat"]))
    layout = sam["layout"]
    expected = local.positions @ quat_to_matrix(layout["rotation"]).T * layout["scale"][0] + layout["translation"]
    assert np.abs(placed.positions - expected).max() < 1e-4
    assert api(None).get(f"/api/v1/projects/{gen_project.slug}/scenes/{image.pk}.zip").status_code in (401, 403)
