"""Hard-case recovery (engine.rounds.recovery): a lead sends the open round's hard cases back for
more seeds, ranked; each comes back as a recovery item of the same object that annotators judge
like any other; the hard case is recovered (done) when that winner is rated at least alpha, goes
to the artists otherwise, and stays out of their queue meanwhile; the round counts them."""
from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from annotation.models import Item, ItemState
from annotation.selectors import artist_queue
from engine.rounds import generate, recovery
from engine.rounds import services as round_services
from modelzoo.models import Candidate, GenerationJobItem
from tests.annotation.conftest import judgement_body

pytestmark = pytest.mark.django_db


def generate_inline(job) -> None:
    for pk in GenerationJobItem.objects.filter(job=job).values_list("pk", flat=True):
        generate.job_item_generate(job_item_id=pk)


def judge(api, annotator, project, item: Item, rating: int) -> None:
    payload = api(annotator).post(f"/api/v1/projects/{project.slug}/next-item").json()
    assert payload["item"]["id"] == item.pk, payload
    r = api(annotator).post(f"/api/v1/items/{item.pk}/judgements", judgement_body(payload, rating=rating),
                            format="json")
    assert r.status_code == 201, r.json()


@pytest.fixture
def judged_round(pre_ranked_project, member, api):
    """Round 1 of two objects, each judged once: one hard case (rated 2), one done (rated 4)."""
    project, gen, ranker = pre_ranked_project
    project.overlap, project.gold_rate = 1, 0
    project.save()
    rnd = round_services.round_open(project=project, steps=2, candidates_per_item=2)
    generate_inline(rnd.generation_jobs.get())
    hard, good = Item.objects.filter(round=rnd).order_by("pk")
    annotator = member("annotator")
    judge(api, annotator, project, hard, rating=2)
    judge(api, annotator, project, good, rating=4)
    hard.refresh_from_db()
    assert hard.state == ItemState.HARD_CASE and list(artist_queue(project=project)) == [hard]
    return project, ranker, rnd, hard, good, annotator


def test_a_recovered_hard_case_is_done_and_its_recovery_is_the_positive(judged_round, member, api):
    project, ranker, rnd, hard, good, annotator = judged_round
    lead = member("lead")
    r = api(lead).post(f"/api/v1/projects/{project.slug}/rounds/1/recover",
                       {"ranker": ranker.pk, "generate": 6, "shown": 2, "random": 1}, format="json")
    assert r.status_code == 201, r.json()
    assert (r.json()["total_items"], r.json()["candidates_per_item"]) == (1, 3)
    rescue = Item.objects.get(recovers=hard)
    assert (rescue.mask_id, rescue.round_id, rescue.state) == (hard.mask_id, rnd.pk, ItemState.WAITING)
    # While it is generated and judged, the hard case is not the artists' to model.
    assert list(artist_queue(project=project)) == []

    generate_inline(rescue.generation_job_items.get().job)
    rescue.refresh_from_db()
    assert rescue.state == ItemState.READY
    new = list(Candidate.objects.filter(item=rescue))
    old_seeds = set(Candidate.objects.filter(item=hard).values_list("seed", flat=True))
    assert len(new) == 3 and not old_seeds & {c.seed for c in new}  # new seeds, ranked: 2 top + 1 drawn
    assert sorted(c.selection for c in new) == ["random", "top", "top"]
    assert all(c.ranker_rank is not None for c in new)

    judge(api, member("annotator"), project, rescue, rating=4)  # someone else, or the same annotator: a new item
    rescue.refresh_from_db()
    hard.refresh_from_db()
    assert rescue.state == ItemState.DONE and not rescue.hard_case
    assert hard.state == ItemState.DONE and hard.hard_case and hard.state_reason == f"recovered by item {rescue.pk}"
    assert list(artist_queue(project=project)) == []
    status = api(lead).get(f"/api/v1/projects/{project.slug}/rounds/").json()[0]
    assert status["hard_case_recovery"] == {"sent": 1, "pending": 0, "recovered": 1, "not_recovered": 0,
                                            "recovered_share": 1.0}

    # The recovery's judgement rejected in review: the hard case is the artists' again.
    judgement = rescue.judgements.get()
    assert api(lead).post(f"/api/v1/judgements/{judgement.pk}/reject", {"reason": "careless"},
                          format="json").status_code == 200
    hard.refresh_from_db()
    assert hard.state == ItemState.HARD_CASE and list(artist_queue(project=project)) == []  # recovery queued again


def test_a_hard_case_not_recovered_goes_to_the_artists_and_is_sent_once(judged_round, member, api):
    project, ranker, rnd, hard, good, annotator = judged_round
    out = io.StringIO()
    call_command("round", "recover", "--project", project.slug, "--ranker", str(ranker.pk), "--generate", "4",
                 "--shown", "2", "--random", "0", stdout=out)
    assert "1 hard cases get 4 new seeds each, ranked; annotators see 2 of each" in out.getvalue()
    rescue = Item.objects.get(recovers=hard)
    generate_inline(rescue.generation_job_items.get().job)
    judge(api, annotator, project, rescue, rating=1)
    rescue.refresh_from_db()
    hard.refresh_from_db()
    assert rescue.state == ItemState.HARD_CASE and hard.state == ItemState.HARD_CASE
    assert list(artist_queue(project=project)) == [hard]  # the original, never the recovery item
    glb = SimpleUploadedFile("mesh.glb", b"glTF", content_type="model/gltf-binary")
    r = api(member("artist")).post(f"/api/v1/items/{rescue.pk}/artist-mesh", {"file": glb}, format="multipart")
    assert (r.status_code, r.json()["error"]["code"]) == (409, "recovery_item"), r.json()
    status = api(member("lead")).get(f"/api/v1/projects/{project.slug}/rounds/").json()[0]
    assert status["hard_case_recovery"]["not_recovered"] == 1 and status["hard_case_recovery"]["recovered_share"] == 0.0

    out = io.StringIO()
    call_command("round", "status", "--project", project.slug, stdout=out)
    assert "recov" in out.getvalue() and " 0/1 " in out.getvalue()
    lead = member("lead")
    again = api(lead).post(f"/api/v1/projects/{project.slug}/rounds/1/recover", {"ranker": ranker.pk}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "nothing_to_recover"


def test_recovery_refuses_what_it_cannot_do_and_creates_nothing(judged_round, member, api):
    project, ranker, rnd, hard, good, annotator = judged_round
    lead = member("lead")
    url = f"/api/v1/projects/{project.slug}/rounds/1/recover"
    for body, status, code in [
        ({"ranker": ranker.pk, "items": [good.pk]}, 400, "not_recoverable"),  # done, not a hard case
        ({"ranker": ranker.pk, "generate": 2, "shown": 3}, 400, "invalid_pre_rank"),
        ({"generate": 8}, 400, "invalid"),  # no ranker
    ]:
        r = api(lead).post(url, body, format="json")
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.json()
    assert api(annotator).post(url, {"ranker": ranker.pk}, format="json").status_code == 403
    wrong_round = api(lead).post(f"/api/v1/projects/{project.slug}/rounds/2/recover", {"ranker": ranker.pk},
                                 format="json")
    assert wrong_round.status_code == 409, wrong_round.json()
    assert not Item.objects.filter(recovers__isnull=False).exists()
    assert rnd.generation_jobs.count() == 1


def test_a_retrieval_in_the_mix_offers_its_nearest_shapes_and_a_recovery_the_next_ones(pre_ranked_project, member,
                                                                                     api, tmp_path):
    from modelzoo import services as zoo
    from modelzoo.generators.retrieval import build_library, save_library, synthetic_meshes

    project, gen, ranker = pre_ranked_project
    project.overlap, project.gold_rate = 1, 0
    project.save()
    save_library(build_library(synthetic_meshes("household", 8, 123_000), log=None), str(tmp_path / "lib.npz"))
    library = zoo.checkpoint_register(name="retrieval", version="lib", backend="retrieval",
                                      data=(tmp_path / "lib.npz").read_bytes(), project=project)[0]
    zoo.project_mix_set(project=project, mix=[(gen, 0.5), (library, 0.5)])
    rnd = round_services.round_open(project=project, steps=2, candidates_per_item=4)
    generate_inline(rnd.generation_jobs.get())
    hard = Item.objects.filter(round=rnd).order_by("pk").first()
    assert sorted(Candidate.objects.filter(item=hard, checkpoint=library).values_list("seed", flat=True)) == [0, 1]
    annotator = member("annotator")
    for item in Item.objects.filter(round=rnd).order_by("pk"):
        judge(api, annotator, project, item, rating=2 if item.pk == hard.pk else 4)
    job = recovery.hard_cases_recover(project=project, pre_rank={"ranker": ranker.pk, "generate": 8, "shown": 3,
                                                                 "random": 1})
    rescue = Item.objects.get(recovers=hard)
    (plan,) = GenerationJobItem.objects.filter(job=job).values_list("plan", flat=True)
    assert sorted(s for c, s in plan if c == library.pk) == [2, 3, 4, 5]  # the next nearest: 0 and 1 were shown
    generate_inline(job)
    ranked = GenerationJobItem.objects.get(job=job).ranking
    assert sorted(r["seed"] for r in ranked if r["checkpoint"] == library.pk) == [2, 3, 4, 5]
    assert Candidate.objects.filter(item=rescue).count() == 4
