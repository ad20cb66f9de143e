import pytest

from engine.exports.models import Snapshot
from engine.exports.tasks import snapshot_build_task
from tests.engine.factories import MembershipFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def test_define_build_fetch_download(world, trainer, api, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr(snapshot_build_task, "delay", lambda pk: sent.append(pk))
    client = api(trainer)
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(f"/api/v1/projects/{world.project.slug}/snapshots/",
                        {"kind": "dpo", "format": "parquet", "pairing": "winner_beat"}, format="json")
    assert r.status_code == 201, r.content
    sid = r.json()["id"]
    assert sent == [sid] and r.json()["state"] == "pending"
    snapshot_build_task(sid)  # what the worker runs
    detail = client.get(f"/api/v1/snapshots/{sid}/").json()
    assert detail["state"] == "done" and detail["progress"]["fraction"] == 1.0
    assert detail["progress"]["rows_total"] == detail["manifest"]["counts"]["rows"]
    entry = detail["manifest"]["files"][1]
    r = client.get(f"/api/v1/snapshots/{sid}/files/{entry['path']}")
    assert r.status_code == 200 and len(b"".join(r.streaming_content)) == entry["size"]
    listing = client.get(f"/api/v1/projects/{world.project.slug}/snapshots/").json()
    assert [s["id"] for s in listing["results"]] == [sid]
    again = client.post(f"/api/v1/projects/{world.project.slug}/snapshots/",
                        {"kind": "dpo", "format": "parquet", "pairing": "winner_beat"}, format="json")
    assert again.status_code == 200 and again.json()["id"] == sid
    assert client.post(f"/api/v1/snapshots/{sid}/build/").status_code == 409
    assert client.get(f"/api/v1/snapshots/{sid}/files/nope.parquet").status_code == 404


def test_bad_definitions_over_http(world, trainer, member, api):
    client = api(trainer)
    url = f"/api/v1/projects/{world.project.slug}/snapshots/"
    r = client.post(url, {"kind": "sft", "filters": {"colour": "red"}}, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_filter"
    assert "colour" in r.json()["error"]["message"]
    r = client.post(url, {"kind": "sft", "filters": {"rounds": [2], "exclude_annotators": [
        u.username for u in world.annotators]}}, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "empty_selection"
    # A project the trainer is not a member of: not found, and its snapshots are not visible.
    other = ProjectFactory()
    assert client.post(f"/api/v1/projects/{other.slug}/snapshots/", {"kind": "sft"}, format="json").status_code == 404
    assert api(member("annotator")).post(url, {"kind": "sft"}, format="json").status_code == 403
    stranger_project = ProjectFactory()
    MembershipFactory(project=stranger_project, user=trainer, role="annotator")
    assert client.get(f"/api/v1/projects/{stranger_project.slug}/snapshots/").status_code == 403


def test_snapshot_of_another_project_is_not_found(world, api, member):
    from engine.exports import services

    snap, _ = services.snapshot_define(project=world.project, kind="sft", format="jsonl")
    outsider = ProjectFactory()
    from tests.engine.factories import UserFactory

    user = UserFactory()
    MembershipFactory(project=outsider, user=user, role="trainer")
    assert api(user).get(f"/api/v1/snapshots/{snap.pk}/").status_code == 404
    assert Snapshot.objects.count() == 1


@pytest.mark.parametrize("body, field, words", [
    ({"kind": "sft", "filters": {"rounds": [1, 2**64]}}, None, "'rounds' must be a non-empty list of integers (64-bit)"),
    ({"kind": "sft", "filters": {"checkpoints": [-(2**63) - 1]}}, None, "'checkpoints' must be a non-empty list"),
    ({"kind": "sft", "since": 2**63}, "since", "less than or equal to 9223372036854775807"),
    ({"kind": "sft", "shard_bytes": 2**63}, "shard_bytes", "less than or equal to 9223372036854775807"),
    ({"kind": "sft", "filters": {"exclude_annotators": ["bob\u0000"]}}, None, "\\u0000"),
])
def test_numbers_beyond_the_database_are_refused(world, trainer, api, body, field, words):
    r = api(trainer).post(f"/api/v1/projects/{world.project.slug}/snapshots/", body, format="json")
    assert r.status_code == 400, r.content[:300]
    error = r.json()["error"]
    assert words in (" ".join(error["details"][field]) if field else error["message"])
    assert Snapshot.objects.count() == 0
