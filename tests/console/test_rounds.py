"""The rounds pages and the API calls they make: open a round with its mix and photos, follow its
generation jobs, retry the failed items, close it."""
from __future__ import annotations

import pytest

from annotation.models import Item, ItemState
from engine.rounds import generate
from modelzoo import services as mz
from modelzoo.models import GenerationJobItem, ProjectCheckpoint
from tests.modelzoo_engine.conftest import photo_with_masks, weights_variant

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_broker(monkeypatch):
    sent = []
    monkeypatch.setattr(generate, "job_items_enqueue", lambda *, job_item_ids: sent.extend(job_item_ids))
    return sent


@pytest.fixture
def checkpoints(project):
    start = mz.checkpoint_register(name="builtin", version="start", backend="builtin",
                                   data=mz.BOOTSTRAP_FILE.read_bytes())[0]
    child = mz.checkpoint_register(name="builtin", version="r1", backend="builtin", data=weights_variant("r1"),
                                   parent=start, project=project)[0]
    return start, child


def test_a_lead_opens_a_round_for_chosen_photos_with_a_new_mix(client, project, member, checkpoints, no_broker,
                                                               django_capture_on_commit_callbacks):
    start, child = checkpoints
    mz.project_mix_set(project=project, mix=[(start, 1.0)])
    lead = member("lead")
    first, second = photo_with_masks(project, seed=0, n_masks=2), photo_with_masks(project, seed=1, n_masks=1)
    client.force_login(lead)
    page = client.get(f"/console/projects/{project.slug}/rounds/").content.decode()
    assert 'id="round-open"' in page and "every mask not generated yet (3 of 3)" in page
    assert f'data-checkpoint="{child.pk}"' in page  # registered for the project: it may use it

    body = {"quality_threshold": 4, "steps": 2, "candidates_per_item": 3, "image_ids": [second.pk],
            "mix": [{"checkpoint": start.pk, "share": 1}, {"checkpoint": child.pk, "share": 3}]}
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(f"/api/v1/projects/{project.slug}/rounds/", body, content_type="application/json")
    assert r.status_code == 201, r.content
    assert r.json()["items"] == 1 and r.json()["quality_threshold"] == 4  # only the second photo's one mask
    assert dict(ProjectCheckpoint.objects.filter(project=project).values_list("checkpoint_id", "share")) == {
        start.pk: 1.0, child.pk: 3.0}
    assert len(no_broker) == 1
    jobs = client.get(f"/api/v1/projects/{project.slug}/generation-jobs/?round=1").json()["results"]
    assert len(jobs) == 1 and jobs[0]["candidates_per_item"] == 3 and jobs[0]["steps"] == 2
    assert jobs[0]["progress"]["eta_s"] is None  # nothing generated yet: no rate to extrapolate
    assert client.get(f"/api/v1/projects/{project.slug}/generation-jobs/?round=2").json()["count"] == 0
    page = client.get(f"/console/projects/{project.slug}/rounds/1/").content.decode()
    assert 'id="generation"' in page and 'id="round-close"' in page and "alpha 4" in page
    assert first.masks.count() == 2 and not Item.objects.filter(mask__image=first).exists()


def test_open_refuses_photos_of_another_project_and_checkpoints_it_may_not_use(client, project, member,
                                                                               checkpoints, no_broker):
    from tests.engine.factories import ProjectFactory

    start, _ = checkpoints
    mz.project_mix_set(project=project, mix=[(start, 1.0)])
    other = ProjectFactory()
    theirs = photo_with_masks(other, seed=3, n_masks=1)
    hidden = mz.checkpoint_register(name="other", version="x", backend="builtin", data=weights_variant("x"))[0]
    client.force_login(member("lead"))
    url = f"/api/v1/projects/{project.slug}/rounds/"
    r = client.post(url, {"image_ids": [theirs.pk]}, content_type="application/json")
    assert r.status_code == 400 and f"Images [{theirs.pk}]" in r.json()["error"]["message"]
    r = client.post(url, {"mix": [{"checkpoint": hidden.pk, "share": 1}]}, content_type="application/json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "no_checkpoint"
    assert not project.rounds.exists()  # refused whole: no round left open
    assert dict(ProjectCheckpoint.objects.filter(project=project).values_list("checkpoint_id", "share")) == {
        start.pk: 1.0}


def test_failed_items_are_retried_in_a_new_job_and_the_reasons_stay_readable(client, project, member, checkpoints,
                                                                             no_broker):
    start, _ = checkpoints
    mz.project_mix_set(project=project, mix=[(start, 1.0)])
    photo_with_masks(project, seed=0, n_masks=2)
    lead, trainer = member("lead"), member("trainer")
    client.force_login(lead)
    assert client.post(f"/api/v1/projects/{project.slug}/rounds/", {}, content_type="application/json").status_code == 201
    job_items = list(GenerationJobItem.objects.order_by("pk"))
    failed = generate.job_item_fail(job_item_id=job_items[0].pk, reason="CUDA out of memory")
    job = failed.job
    detail = client.get(f"/api/v1/projects/{project.slug}/generation-jobs/{job.pk}/").json()
    assert detail["progress"]["items_failed"] == 1 and detail["failures"][0]["error"] == "CUDA out of memory"

    client.force_login(trainer)  # trainers follow rounds; retrying is a lead's
    assert client.post(f"/api/v1/projects/{project.slug}/generation-jobs/{job.pk}/retry").status_code == 403
    client.force_login(lead)
    r = client.post(f"/api/v1/projects/{project.slug}/generation-jobs/{job.pk}/retry")
    assert r.status_code == 201 and r.json()["total_items"] == 1 and r.json()["id"] != job.pk
    assert Item.objects.get(pk=failed.item_id).state == ItemState.WAITING
    detail = client.get(f"/api/v1/projects/{project.slug}/generation-jobs/{job.pk}/").json()
    assert detail["progress"]["items_failed"] == 0
    assert detail["failures"][0]["state"] == "superseded" and "CUDA out of memory (retried in job" in \
        detail["failures"][0]["error"]
    r = client.post(f"/api/v1/projects/{project.slug}/generation-jobs/{job.pk}/retry")
    assert r.status_code == 409 and r.json()["error"]["code"] == "nothing_failed"

    assert client.post(f"/api/v1/projects/{project.slug}/rounds/1/close", {"export": False},
                       content_type="application/json").status_code == 200
    r = client.post(f"/api/v1/projects/{project.slug}/generation-jobs/{job.pk}/retry")
    assert r.status_code == 409 and r.json()["error"]["code"] == "round_closed"


def test_annotators_do_not_see_the_rounds_pages(client, project, member):
    client.force_login(member("annotator"))
    r = client.get(f"/console/projects/{project.slug}/rounds/")
    assert r.status_code == 403 and b"lead" in r.content.lower()
