"""Candidates' splats and meshes through the API: the splat endpoints, the next-item payload's
representation keys and the project's judged representation."""
import gzip
import io

import pytest
from plyfile import PlyData

from engine.models import Role
from engine.rounds import generate
from modelzoo.models import Candidate
from modelzoo.splats import read_spz
from tests.engine.factories import UserFactory


@pytest.fixture
def generated(gen_project, fresh_registry):
    job = generate.generation_job_start(project=gen_project, steps=1)
    for job_item in job.job_items.all():
        generate.job_item_generate(job_item_id=job_item.pk)
    return gen_project


def test_builtin_candidates_carry_a_splat_served_as_spz_and_ply(generated, member, api):
    annotator, outsider = member(Role.ANNOTATOR), UserFactory()
    candidate = Candidate.objects.filter(item__project=generated).first()
    assert candidate.num_gaussians == 4096 and candidate.splat.name.endswith(".ply")
    assert candidate.received["splat"]["gaussians"] == 4096 and not candidate.textured
    r = api(annotator).get(f"/api/v1/candidates/{candidate.pk}/splat")
    assert r.status_code == 200 and r["Content-Type"] == "application/octet-stream"
    assert r["Cache-Control"] == "private, max-age=86400"
    spz = b"".join(r.streaming_content)
    assert gzip.decompress(spz)[:4] == b"NGSP" and len(read_spz(spz)) == 4096
    r = api(annotator).get(f"/api/v1/candidates/{candidate.pk}/splat-ply")
    assert r.status_code == 200
    ply = PlyData.read(io.BytesIO(b"".join(r.streaming_content)))
    assert ply["vertex"].count == 4096 and "rot_3" in ply["vertex"].data.dtype.names
    assert api(outsider).get(f"/api/v1/candidates/{candidate.pk}/splat").status_code == 404


def test_a_candidate_without_a_splat_or_mesh_answers_404_with_the_reason(generated, member, api):
    annotator = member(Role.ANNOTATOR)
    candidate = Candidate.objects.filter(item__project=generated).first()
    Candidate.objects.filter(pk=candidate.pk).update(splat="", splat_compact="", num_gaussians=0)
    for variant in ("splat", "splat-ply"):
        r = api(annotator).get(f"/api/v1/candidates/{candidate.pk}/{variant}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "no_splat", r.content
        assert "has no splat" in r.json()["error"]["message"]
    Candidate.objects.filter(pk=candidate.pk).update(glb="", glb_compact="", splat=candidate.splat.name,
                                                     splat_compact=candidate.splat_compact.name)
    r = api(annotator).get(f"/api/v1/candidates/{candidate.pk}/glb-compact")
    assert r.status_code == 404 and r.json()["error"]["code"] == "no_mesh"


@pytest.mark.parametrize("judged, expect", [("textured", "textured"), ("geometry", "geometry"), ("splat", "splat")])
def test_next_item_payload_names_every_representation(generated, member, api, judged, expect):
    lead, annotator = member(Role.LEAD), member(Role.ANNOTATOR)
    r = api(lead).patch(f"/api/v1/projects/{generated.slug}/", {"judged_representation": judged}, format="json")
    assert r.status_code == 200 and r.json()["judged_representation"] == judged, r.content
    payload = api(annotator).post(f"/api/v1/projects/{generated.slug}/next-item").json()
    item = payload["item"]
    assert item["judged_representation"] == judged
    c = item["candidates"][0]
    cid = c["id"]
    assert c["splat_url"] == f"/api/v1/candidates/{cid}/splat" and c["splat_format"] == "spz"
    assert c["glb_url"] == f"/api/v1/candidates/{cid}/glb" and c["num_gaussians"] == 4096
    assert c["textured"] is False and c["drawn_as"] == expect


def test_judged_representation_refuses_an_unknown_value(project, member, api):
    lead = member(Role.LEAD)
    r = api(lead).patch(f"/api/v1/projects/{project.slug}/", {"judged_representation": "voxels"}, format="json")
    assert r.status_code == 400 and "judged_representation" in r.content.decode()


def test_splat_only_and_mesh_only_candidates_are_drawn_as_what_they_have(generated, member, api):
    from annotation.models import Lease
    from annotation.selectors import lease_payload

    annotator = member(Role.ANNOTATOR)
    generated.judged_representation = "splat"
    generated.save(update_fields=["judged_representation"])
    r = api(annotator).post(f"/api/v1/projects/{generated.slug}/next-item")
    lease = Lease.objects.select_related("project").get(pk=r.json()["lease"]["id"])
    first, second, *_ = Candidate.objects.filter(item_id=lease.item_id).order_by("id")
    Candidate.objects.filter(pk=first.pk).update(glb="", glb_compact="", num_vertices=0, num_faces=0)
    Candidate.objects.filter(pk=second.pk).update(splat="", splat_compact="", num_gaussians=0)
    by_id = {c["id"]: c for c in lease_payload(lease)["item"]["candidates"]}  # read again through the store
    assert by_id[first.pk]["glb_url"] is None and by_id[first.pk]["glb_compact_url"] is None
    assert by_id[first.pk]["drawn_as"] == "splat" and by_id[first.pk]["num_vertices"] == 0
    assert by_id[second.pk]["splat_url"] is None and by_id[second.pk]["splat_format"] is None
    assert by_id[second.pk]["drawn_as"] == "textured" and by_id[second.pk]["num_gaussians"] == 0
