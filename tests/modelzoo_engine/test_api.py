"""The model-zoo API: registry upload/list, the project's mix, jobs with progress, candidate files."""
import hashlib

import pytest

from django.core.files.uploadedfile import SimpleUploadedFile

from engine.models import Role
from engine.rounds import generate
from modelzoo import services
from modelzoo.models import Checkpoint
from tests.engine.factories import ProjectFactory, UserFactory


def test_trainer_uploads_and_lists_checkpoints_annotator_cannot(project, member, api, checkpoint_file):
    trainer, annotator = member(Role.TRAINER), member(Role.ANNOTATOR)
    data = checkpoint_file.read_bytes()
    body = {"name": "builtin", "version": "r2", "backend": "builtin", "recipe": '{"cmd": "sft"}',
            "project": project.slug, "file": SimpleUploadedFile("r2.pt", data)}
    r = api(trainer).post("/api/v1/checkpoints/", body, format="multipart")
    assert r.status_code == 201, r.content
    assert r.json()["sha256"] == hashlib.sha256(data).hexdigest() and r.json()["recipe"] == {"cmd": "sft"}
    ckpt = Checkpoint.objects.get(pk=r.json()["id"])
    assert ckpt.file.name == f"checkpoints/{ckpt.sha256[:2]}/{ckpt.sha256}.pt"
    body["file"] = SimpleUploadedFile("r2.pt", data)
    assert api(trainer).post("/api/v1/checkpoints/", body, format="multipart").status_code == 200  # idempotent
    body["file"] = SimpleUploadedFile("r2.pt", data + b"x")
    assert api(trainer).post("/api/v1/checkpoints/", body, format="multipart").status_code == 400
    listed = api(trainer).get("/api/v1/checkpoints/").json()
    assert [c["version"] for c in listed["results"]] == ["r2"]
    assert api(annotator).get("/api/v1/checkpoints/").status_code == 403
    assert api(None).get("/api/v1/checkpoints/").status_code in (401, 403)
    bad = {"name": "x", "version": "1", "backend": "nope", "project": project.slug}
    assert api(trainer).post("/api/v1/checkpoints/", bad, format="json").json()["error"]["message"].startswith(
        "Unknown backend")


def test_upload_of_bytes_the_backend_cannot_load_is_refused(project, member, api, settings, tmp_path):
    import pickle

    class WritesMarker:
        def __reduce__(self):
            return (open, (str(tmp_path / "marker"), "w"))

    trainer = member(Role.TRAINER)
    for data in [bytes(range(256)) * 64, pickle.dumps({"format": "modelzoo.builtin/1", "x": WritesMarker()}, 2)]:
        body = {"name": "builtin", "version": "r9", "backend": "builtin", "project": project.slug,
                "file": SimpleUploadedFile("r9.pt", data)}
        r = api(trainer).post("/api/v1/checkpoints/", body, format="multipart")
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_weights", r.content
        assert "not a built-in model checkpoint" in r.json()["error"]["message"]
    assert not (tmp_path / "marker").exists()  # the pickle's call was refused, not made
    assert not Checkpoint.objects.exists() and not list(settings.MEDIA_ROOT.rglob("*.pt"))


def test_lead_sets_a_mix_and_starts_a_job_with_progress(gen_project, member, api, checkpoint, checkpoint_file):
    lead, annotator = member(Role.LEAD), member(Role.ANNOTATOR)
    other, _ = services.checkpoint_register(name="builtin", version="other", backend="builtin",
                                            data=checkpoint_file.read_bytes(), project=gen_project)
    slug = gen_project.slug
    mix = {"mix": [{"checkpoint": checkpoint.pk, "share": 3}, {"checkpoint": other.pk, "share": 1}]}
    assert api(annotator).put(f"/api/v1/projects/{slug}/checkpoints/", mix, format="json").status_code == 403
    r = api(lead).put(f"/api/v1/projects/{slug}/checkpoints/", mix, format="json")
    assert r.status_code == 200 and [m["share"] for m in r.json()["mix"]] == [3.0, 1.0]
    assert api(annotator).post(f"/api/v1/projects/{slug}/generation-jobs/", {}, format="json").status_code == 403
    r = api(lead).post(f"/api/v1/projects/{slug}/generation-jobs/", {"steps": 1}, format="json")
    assert r.status_code == 201, r.content
    job = r.json()
    assert job["progress"] | {"elapsed_s": 0, "candidates_per_s": 0} == {
        "done": 0, "total": 16, "fraction": 0.0, "items_done": 0, "items_failed": 0, "items_total": 4,
        "elapsed_s": 0, "candidates_per_s": 0, "eta_s": None}  # no rate before the first candidate
    first = gen_project.generation_jobs.get().job_items.first()
    assert sorted(c for c, _ in first.plan) == [checkpoint.pk] * 3 + [other.pk]  # shares 3:1 of N=4
    generate.job_item_generate(job_item_id=first.pk)
    detail = api(lead).get(f"/api/v1/projects/{slug}/generation-jobs/{job['id']}/").json()
    assert detail["progress"]["done"] == 4 and detail["progress"]["items_done"] == 1 and detail["failures"] == []
    assert detail["progress"]["eta_s"] > 0  # 12 candidates left at the rate of the first 4
    assert api(lead).get(f"/api/v1/projects/{slug}/generation-jobs/").json()["count"] == 1


def test_candidate_files_for_project_members_only(gen_project, member, api, fresh_registry):
    annotator = member(Role.ANNOTATOR)
    outsider = UserFactory()
    ProjectFactory()
    job = generate.generation_job_start(project=gen_project, steps=1)
    job_item = job.job_items.first()
    generate.job_item_generate(job_item_id=job_item.pk)
    candidate = job_item.item.candidates.first()
    for variant, content_type, magic in [("glb", "model/gltf-binary", b"glTF"),
                                         ("glb-compact", "model/gltf-binary", b"glTF"),
                                         ("preview", "image/png", b"\x89PNG")]:
        r = api(annotator).get(f"/api/v1/candidates/{candidate.pk}/{variant}")
        assert r.status_code == 200 and r["Content-Type"] == content_type
        assert b"".join(r.streaming_content).startswith(magic)
        assert api(outsider).get(f"/api/v1/candidates/{candidate.pk}/{variant}").status_code == 404
    assert api(annotator).get(f"/api/v1/candidates/{candidate.pk}/obj").status_code == 404
    assert api(None).get(f"/api/v1/candidates/{candidate.pk}/glb").status_code in (401, 403)


def test_job_list_has_no_n_plus_one(gen_project, member, api, django_assert_max_num_queries):
    lead = member(Role.LEAD)
    for _ in range(3):
        generate.generation_job_start(project=gen_project)
    with django_assert_max_num_queries(8):
        assert api(lead).get(f"/api/v1/projects/{gen_project.slug}/generation-jobs/").json()["count"] == 3


@pytest.mark.parametrize("field", ["recipe", "config"])
def test_a_checkpoint_field_nested_too_deep_is_a_400_and_stores_nothing(project, member, api, checkpoint_file,
                                                                         settings, field):
    trainer = member(Role.TRAINER)
    body = {"name": "builtin", "version": "deep", "backend": "builtin", "project": project.slug,
            field: "[" * 5000 + "]" * 5000, "file": SimpleUploadedFile("deep.pt", checkpoint_file.read_bytes())}
    r = api(trainer).post("/api/v1/checkpoints/", body, format="multipart")
    assert r.status_code == 400 and f"'{field}'" in r.json()["error"]["message"], r.content
    deep_body = '{"name": "builtin", "version": "deep", "%s": %s}' % (field, "[" * 5000 + "]" * 5000)
    as_json = api(trainer).post("/api/v1/checkpoints/", deep_body, content_type="application/json")
    assert as_json.status_code == 400 and as_json.json()["error"]["code"] == "json_too_deep", as_json.content
    assert not Checkpoint.objects.exists() and not list(settings.MEDIA_ROOT.rglob("*.pt"))


@pytest.mark.django_db(transaction=True)
def test_a_job_started_while_the_broker_is_down_is_a_503_and_sending_it_again_works(gen_project, member, api,
                                                                                  monkeypatch):
    """Redis down when the job's tasks are sent: a 503 with Retry-After, not a 500; the same
    request sent again once the broker is back starts a job that takes the first one's items over."""
    from engine.celery import app
    from engine.rounds.tasks import generate_item

    lead = member(Role.LEAD)
    sent: list[int] = []

    def enqueue_to_a_closed_port(*, job_item_ids):  # a Redis broker that is not running
        with app.connection_for_write("redis://127.0.0.1:1/0") as conn:
            for pk in job_item_ids:
                generate_item.apply_async(args=[pk], queue=generate.MODEL_QUEUE, connection=conn,
                                          retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.1})

    monkeypatch.setattr(generate, "job_items_enqueue", enqueue_to_a_closed_port)
    url = f"/api/v1/projects/{gen_project.slug}/generation-jobs/"
    r = api(lead).post(url, {"steps": 1}, format="json")
    assert r.status_code == 503 and r["Retry-After"] == "5", r.content
    assert r.json()["error"]["code"] == "unavailable" and "task queue" in r.json()["error"]["message"]

    monkeypatch.setattr(generate, "job_items_enqueue", lambda *, job_item_ids: sent.extend(job_item_ids))
    r = api(lead).post(url, {"steps": 1}, format="json")
    assert r.status_code == 201 and r.json()["progress"]["items_total"] == 4
    first, second = gen_project.generation_jobs.order_by("pk")
    assert sorted(sent) == sorted(second.job_items.values_list("pk", flat=True))
    assert set(first.job_items.values_list("state", flat=True)) == {"superseded"}
