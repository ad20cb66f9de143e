"""Who sees a checkpoint (its lineage, evaluation) and may put it in a project's mix: the projects
that use it, trained it or trained from it, those it was shared with, and every project for the
public bootstrap; others get 404, as for projects."""
from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from engine.errors import ValidationFailed
from engine.exports.models import Snapshot
from engine.models import Membership, Role, Round, TrainingRun
from engine.rounds import train
from modelzoo import services
from modelzoo.models import Checkpoint, CheckpointShare
from tests.engine.factories import ProjectFactory, UserFactory
from tests.modelzoo_engine.conftest import weights_variant

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_projects(project, member):
    """Project A (`project`) with a checkpoint its trainer registered, project B with its own lead,
    and a user who trains in A and leads B (the one who may share between them)."""
    b = ProjectFactory()
    trainer_a = member(Role.TRAINER)
    lead_b, bridge = UserFactory(), UserFactory()
    Membership.objects.create(project=b, user=lead_b, role=Role.LEAD)
    Membership.objects.create(project=b, user=bridge, role=Role.LEAD)
    Membership.objects.create(project=project, user=bridge, role=Role.TRAINER)
    ckpt_a, _ = services.checkpoint_register(name="builtin", version="a1", backend="builtin",
                                             data=weights_variant("a1"), project=project, created_by=trainer_a,
                                             evaluation={"note": "A's secret figures"})
    return {"a": project, "b": b, "trainer_a": trainer_a, "lead_b": lead_b, "bridge": bridge, "ckpt_a": ckpt_a}


def mix(api, user, project, *entries):
    return api(user).put(f"/api/v1/projects/{project.slug}/checkpoints/",
                         {"mix": [{"checkpoint": c, "share": s} for c, s in entries]}, format="json")


def test_another_projects_checkpoint_is_not_found_until_shared(api, two_projects):
    t = two_projects
    ckpt, lead_b = t["ckpt_a"], t["lead_b"]
    assert api(t["trainer_a"]).get(f"/api/v1/checkpoints/{ckpt.pk}/").json()["evaluation"] == {
        "note": "A's secret figures"}
    r = api(lead_b).get(f"/api/v1/checkpoints/{ckpt.pk}/")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert api(lead_b).get("/api/v1/checkpoints/").json()["count"] == 0
    r = mix(api, lead_b, t["b"], (ckpt.pk, 1))
    assert r.status_code == 400 and r.json()["error"]["code"] == "no_checkpoint"
    assert "shares/" in r.json()["error"]["message"]
    # B's lead cannot share what they cannot see; A's trainer cannot share into a project they do not lead
    share = f"/api/v1/checkpoints/{ckpt.pk}/shares/"
    assert api(lead_b).post(share, {"project": t["b"].slug}, format="json").status_code == 404
    assert api(t["trainer_a"]).post(share, {"project": t["b"].slug}, format="json").status_code == 404
    assert api(t["bridge"]).post(share, {"project": t["a"].slug}, format="json").status_code == 403  # trainer in A
    r = api(t["bridge"]).post(share, {"project": t["b"].slug}, format="json")
    assert r.status_code == 201 and r.json()["project"] == t["b"].slug
    assert api(t["bridge"]).post(share, {"project": t["b"].slug}, format="json").status_code == 200  # idempotent
    assert CheckpointShare.objects.get(checkpoint=ckpt, project=t["b"]).shared_by == t["bridge"]
    assert [s["project"] for s in api(t["bridge"]).get(share).json()] == sorted([t["a"].slug, t["b"].slug])
    assert [s["project"] for s in api(lead_b).get(share).json()] == [t["b"].slug]  # A stays unnamed to B
    assert [s["project"] for s in api(t["trainer_a"]).get(share).json()] == [t["a"].slug]
    assert api(lead_b).get(f"/api/v1/checkpoints/{ckpt.pk}/").status_code == 200
    assert [c["id"] for c in api(lead_b).get("/api/v1/checkpoints/").json()["results"]] == [ckpt.pk]
    assert mix(api, lead_b, t["b"], (ckpt.pk, 1)).status_code == 200


def test_the_bootstrap_is_usable_by_every_project(api, two_projects):
    boot, _ = services.bootstrap_register(make_current=False)
    assert boot.public
    r = api(two_projects["lead_b"]).get(f"/api/v1/checkpoints/{boot.pk}/")
    assert r.status_code == 200 and r.json()["public"] is True
    assert mix(api, two_projects["lead_b"], two_projects["b"], (boot.pk, 1)).status_code == 200


def test_a_checkpoint_a_project_generated_with_stays_usable_after_the_mix_moves_on(api, two_projects):
    t = two_projects
    boot, _ = services.bootstrap_register(make_current=False)
    services.project_mix_set(project=t["b"], mix=[(t["ckpt_a"], 1.0)])  # e.g. by the system
    assert mix(api, t["lead_b"], t["b"], (boot.pk, 1)).status_code == 200  # the mix moves on
    assert api(t["lead_b"]).get(f"/api/v1/checkpoints/{t['ckpt_a'].pk}/").status_code == 200
    assert mix(api, t["lead_b"], t["b"], (t["ckpt_a"].pk, 1), (boot.pk, 1)).status_code == 200


def test_training_runs_make_their_parent_and_result_visible_to_their_project(api, two_projects):
    t = two_projects
    boot, _ = services.bootstrap_register(make_current=False)
    result, _ = services.checkpoint_register(name="builtin", version="b-run", backend="builtin",
                                             data=weights_variant("b-run"))  # as by the system, no share
    assert api(t["lead_b"]).get(f"/api/v1/checkpoints/{result.pk}/").status_code == 404
    TrainingRun.objects.create(project=t["b"], stage="sft", parent=boot, checkpoint=result)
    assert api(t["lead_b"]).get(f"/api/v1/checkpoints/{result.pk}/").status_code == 200
    TrainingRun.objects.create(project=t["b"], stage="sft", parent=t["ckpt_a"])  # by the system
    assert api(t["lead_b"]).get(f"/api/v1/checkpoints/{t['ckpt_a'].pk}/").status_code == 200


def test_a_training_run_starts_only_from_a_checkpoint_its_project_may_use(two_projects):
    t = two_projects
    snaps = {kind: Snapshot.objects.create(project=t["b"], kind=kind, format="parquet", state=Snapshot.State.DONE,
                                           definition={}, definition_sha256=kind) for kind in ("sft", "dpo")}
    kwargs = {"project": t["b"], "stage": "both", "sft_snapshot_id": snaps["sft"].pk,
              "dpo_snapshot_id": snaps["dpo"].pk}
    with pytest.raises(ValidationFailed, match="may use") as refused:
        train.training_run_create(parent=t["ckpt_a"].pk, **kwargs)
    assert refused.value.code == "no_checkpoint"
    services.checkpoint_share(checkpoint=t["ckpt_a"], project=t["b"])
    assert train.training_run_create(parent=t["ckpt_a"].pk, **kwargs).parent == t["ckpt_a"]


def test_round_checkpoint_api_takes_only_usable_checkpoints(api, two_projects):
    t = two_projects
    boot, _ = services.bootstrap_register(make_current=False)
    services.project_mix_set(project=t["b"], mix=[(boot, 1.0)])
    Round.objects.create(project=t["b"], index=1, quality_threshold=3)
    url = f"/api/v1/projects/{t['b'].slug}/rounds/1/checkpoint"
    r = api(t["lead_b"]).post(url, {"checkpoint": t["ckpt_a"].pk}, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "no_checkpoint"


def test_upload_is_for_a_project_the_uploader_trains_or_leads(api, two_projects, member):
    t = two_projects
    annotator = member(Role.ANNOTATOR)
    Membership.objects.create(project=t["b"], user=annotator, role=Role.TRAINER)  # trainer elsewhere: may upload

    def body(version, project=None, data=None):
        fields = {"name": "builtin", "version": version, "backend": "builtin",
                  "file": SimpleUploadedFile("w.pt", data or weights_variant(version))}
        return fields | ({"project": project.slug} if project else {})

    r = api(t["lead_b"]).post("/api/v1/checkpoints/", body("b1"), format="multipart")
    assert r.status_code == 400 and r.json()["error"]["code"] == "project_required"
    assert api(annotator).post("/api/v1/checkpoints/", body("b1", t["a"]), format="multipart").status_code == 403
    assert api(t["lead_b"]).post("/api/v1/checkpoints/", body("b1", t["a"]), format="multipart").status_code == 404
    r = api(t["lead_b"]).post("/api/v1/checkpoints/", body("b1", t["b"]), format="multipart")
    assert r.status_code == 201 and CheckpointShare.objects.filter(project=t["b"], checkpoint_id=r.json()["id"])
    # A's name and version, even with A's very weights, do not hand A's record to B
    r = api(t["lead_b"]).post("/api/v1/checkpoints/", body("a1", t["b"], weights_variant("a1")), format="multipart")
    assert r.status_code == 400 and r.json()["error"]["code"] == "checkpoint_exists"
    assert "secret" not in r.content.decode()
    r = api(t["trainer_a"]).post("/api/v1/checkpoints/", body("a1", t["a"], weights_variant("a1")),
                                 format="multipart")
    assert r.status_code == 200 and r.json()["id"] == t["ckpt_a"].pk  # A's own retry is idempotent
    admin = UserFactory(is_superuser=True)
    r = api(admin).post("/api/v1/checkpoints/", body("admin-1"), format="multipart")
    assert r.status_code == 201 and api(admin).get("/api/v1/checkpoints/").json()["count"] == Checkpoint.objects.count()


@pytest.mark.parametrize("entry, field", [
    ({"checkpoint": 2**64, "share": 1}, "checkpoint"),
    ({"checkpoint": -1, "share": 1}, "checkpoint"),
    ({"checkpoint": 1, "share": 0}, "share"),
    ({"checkpoint": 1, "share": -2}, "share"),
    ({"checkpoint": 1, "share": "inf"}, "share"),
    ({"checkpoint": 1, "share": "nan"}, "share"),
    ({"checkpoint": 1, "share": 1e300}, "share"),
])
def test_mix_body_out_of_range_is_a_400(api, project, member, entry, field):
    r = api(member(Role.LEAD)).put(f"/api/v1/projects/{project.slug}/checkpoints/", {"mix": [entry]}, format="json")
    assert r.status_code == 400, r.content
    assert r.json()["error"]["code"] == "invalid" and field in r.json()["error"]["details"]["mix"]["0"]


def test_checkpoint_list_has_no_n_plus_one(api, two_projects, django_assert_max_num_queries):
    for i in range(3):
        services.checkpoint_register(name="builtin", version=f"more{i}", backend="builtin",
                                     data=weights_variant(f"more{i}"), project=two_projects["a"])
    with django_assert_max_num_queries(4):
        assert api(two_projects["trainer_a"]).get("/api/v1/checkpoints/").json()["count"] == 4


def test_site_admins_see_and_edit_shares_in_the_admin(client, two_projects):
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    services.checkpoint_share(checkpoint=two_projects["ckpt_a"], project=two_projects["b"])
    page = client.get("/admin/modelzoo/checkpointshare/")
    assert page.status_code == 200 and two_projects["b"].name in page.content.decode()
    assert client.get("/admin/modelzoo/checkpoint/?public__exact=1").status_code == 200


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_the_bootstrap_public_and_uploads_with_their_uploaders_projects():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("modelzoo", "0003_alter_generationjobitem_state")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    OldCheckpoint = old.get_model("modelzoo", "Checkpoint")
    user = UserFactory()
    project, elsewhere = ProjectFactory(), ProjectFactory()
    Membership.objects.create(project=project, user=user, role=Role.TRAINER)
    Membership.objects.create(project=elsewhere, user=user, role=Role.ANNOTATOR)
    boot = OldCheckpoint.objects.create(name="builtin", version="boot", backend="builtin", lineage={"bootstrap": True})
    upload = OldCheckpoint.objects.create(name="remote", version="1", backend="http", created_by_id=user.pk)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert Checkpoint.objects.get(pk=boot.pk).public and not Checkpoint.objects.get(pk=upload.pk).public
    assert list(CheckpointShare.objects.filter(checkpoint_id=upload.pk).values_list("project", "shared_by")) == [
        (project.pk, user.pk)]
