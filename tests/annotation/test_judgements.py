"""POST items/{id}/judgements, skip, flag, hard cases, artist meshes, corrections."""
import datetime as dt
import io
import struct

import pytest
from django.utils import timezone

from annotation.models import ArtistMesh, Comparison, Flag, ItemState, Judgement, Lease, Skip
from annotation.tasks import leases_expire
from tests.annotation.conftest import judgement_body
from tests.annotation.factories import ready_item

pytestmark = pytest.mark.django_db


def url(payload):
    return f"/api/v1/items/{payload['item']['id']}/judgements"


def test_valid_run_is_stored_with_its_comparisons(project, member, next_item, api):
    item = ready_item(project, n=4)
    a = member("annotator")
    payload = next_item(a, project).json()
    body = judgement_body(payload, prefer=lambda king, ch: "b", rating=5)  # challenger always wins
    r = api(a).post(url(payload), body, format="json")
    assert r.status_code == 201, r.json()
    out = r.json()
    order = [c["id"] for c in payload["item"]["candidates"]]
    assert out["winner"] == order[-1] and out["status"] == "accepted" and out["rating"] == 5
    assert [c["index"] for c in out["comparisons"]] == [1, 2, 3]
    assert out["model_layout"]["translation"] == [0, 0, -2]
    judgement = Judgement.objects.get()
    assert Comparison.objects.filter(judgement=judgement).count() == 3
    item.refresh_from_db()
    assert item.state == ItemState.DONE and item.judgements_done == 1 and not item.hard_case
    assert Lease.objects.get().state == Lease.State.SUBMITTED
    # The submission's answer (built from what was just written) is what the reads show.
    assert api(a).get(f"/api/v1/judgements/{out['id']}").json() == out
    listed = api(a).get(f"/api/v1/projects/{project.slug}/judgements").json()["results"]
    assert listed == [out]


def test_retry_with_the_same_key_returns_the_same_judgement(project, member, next_item, api):
    ready_item(project)
    a = member("annotator")
    payload = next_item(a, project).json()
    body = judgement_body(payload)
    first = api(a).post(url(payload), body, format="json")
    again = api(a).post(url(payload), body, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert Judgement.objects.count() == 1
    other = judgement_body(payload)  # a new key on a lease already used
    r = api(a).post(url(payload), other, format="json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "lease_closed"


@pytest.mark.parametrize("breakage, code", [
    ("swap_sides", "invalid_run"),
    ("wrong_winner", "invalid_run"),
    ("short_run", "invalid_run"),
    ("foreign_candidate", "invalid_candidate"),
    ("rating_high", "invalid_rating"),
    ("rating_low", "invalid_rating"),
    ("bad_outcome", "invalid"),
    ("layout_without_stage", "invalid_layout"),
])
def test_invalid_submissions_are_400_with_the_reason(project, member, next_item, api, breakage, code):
    ready_item(project, n=3)
    other = ready_item(project, n=2)
    a = member("annotator")
    payload = next_item(a, project).json()
    if payload["item"]["id"] == other.pk:  # make sure we judge the 3-candidate item
        api(a).post(f"/api/v1/leases/{payload['lease']['id']}/release")
        payload = next_item(a, project).json()
    body = judgement_body(payload, prefer=lambda k, c: "a")
    comps = body["comparisons"]
    if breakage == "swap_sides":
        comps[0]["left"], comps[0]["right"] = comps[0]["right"], comps[0]["left"]
    elif breakage == "wrong_winner":
        body["winner"] = next(c["id"] for c in payload["item"]["candidates"] if c["id"] != body["winner"])
    elif breakage == "short_run":
        comps.pop()
    elif breakage == "foreign_candidate":
        body["winner"] = other.candidates.first().pk
    elif breakage == "rating_high":
        body["rating"] = 6
    elif breakage == "rating_low":
        body["rating"] = 0
    elif breakage == "bad_outcome":
        comps[0]["outcome"] = "both"
    elif breakage == "layout_without_stage":
        body["layout"] = {"rotation": [1, 0, 0, 0], "translation": [0, 0, -1], "scale": [1, 1, 1]}
    r = api(a).post(url(payload), body, format="json")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == code
    assert Judgement.objects.count() == 0


def test_full_ranking_with_ties(project, member, next_item, api):
    project.ranking_protocol = "full_ranking"
    project.save()
    ready_item(project, n=3)
    a = member("annotator")
    payload = next_item(a, project).json()
    assert payload["item"]["protocol"] == "full_ranking"
    ids = [c["id"] for c in payload["item"]["candidates"]]
    base = {"lease": payload["lease"]["id"], "comparisons": [], "winner": ids[1], "rating": 4}
    bad = api(a).post(url(payload), base | {"key": "k1", "ranking": [[ids[1]], [ids[0]]]}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_ranking"
    ok = api(a).post(url(payload), base | {"key": "k2", "ranking": [[ids[1], ids[2]], [ids[0]]]}, format="json")
    assert ok.status_code == 201, ok.json()
    assert ok.json()["ranking"] == [[ids[1], ids[2]], [ids[0]]]


def test_layout_stage_stores_the_adjusted_layout(project, member, next_item, api):
    project.layout_stage = True
    project.save()
    ready_item(project, n=2)
    a = member("annotator")
    payload = next_item(a, project).json()
    assert payload["item"]["layout_stage"] is True
    body = judgement_body(payload)
    r = api(a).post(url(payload), body, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "layout_required"
    body["layout"] = {"rotation": [2, 0, 0, 0], "translation": [0.1, 0, -2], "scale": [1.2, 1.2, 1.2]}
    r = api(a).post(url(payload), body, format="json")
    assert r.status_code == 201
    assert r.json()["layout"] == {"rotation": [1.0, 0.0, 0.0, 0.0], "translation": [0.1, 0.0, -2.0],
                                  "scale": [1.2, 1.2, 1.2]}
    assert r.json()["model_layout"]["scale"] == [1, 1, 1]


def test_late_submission_accepted_if_nobody_took_the_item(project, member, next_item, submit):
    item = ready_item(project)
    a = member("annotator")
    payload = next_item(a, project).json()
    Lease.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=5))
    leases_expire()
    assert submit(a, payload).status_code == 201
    item.refresh_from_db()
    assert item.state == ItemState.DONE and item.claims == 1 and item.judgements_done == 1


def test_late_submission_after_someone_else_took_it_is_409(project, member, next_item, submit):
    ready_item(project)
    a, b = member("annotator"), member("annotator")
    payload = next_item(a, project).json()
    Lease.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=5))
    assert next_item(b, project).status_code == 200
    r = submit(a, payload)
    assert r.status_code == 409 and r.json()["error"]["code"] == "lease_lost"
    assert Judgement.objects.count() == 0


def test_hard_case_goes_to_the_artist_queue_and_takes_a_mesh(project, member, next_item, submit, api):
    item = ready_item(project)
    a, artist, lead = member("annotator"), member("artist"), member("lead")
    r = submit(a, next_item(a, project).json(), rating=2)
    assert r.status_code == 201 and r.json()["below_threshold"] is True
    item.refresh_from_db()
    assert item.state == ItemState.HARD_CASE and item.hard_case
    queue = api(artist).get(f"/api/v1/projects/{project.slug}/artist-queue").json()
    assert [row["id"] for row in queue["results"]] == [item.pk]
    bad = api(artist).post(f"/api/v1/items/{item.pk}/artist-mesh", {"file": io.BytesIO(b"not a mesh")},
                           format="multipart")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_glb"
    glb = struct.pack("<4sII", b"glTF", 2, 20) + b"\x00" * 8
    f = io.BytesIO(glb)
    f.name = "chair.glb"
    r = api(artist).post(f"/api/v1/items/{item.pk}/artist-mesh", {"file": f}, format="multipart")
    assert r.status_code == 201
    f.seek(0)
    again = api(lead).post(f"/api/v1/items/{item.pk}/artist-mesh", {"file": f}, format="multipart")
    assert again.status_code == 200 and ArtistMesh.objects.count() == 1  # content-addressed
    assert ArtistMesh.objects.get().file.name.startswith("artist/")
    item.refresh_from_db()
    assert item.state == ItemState.DONE and item.hard_case  # candidates stay negatives
    got = api(lead).get(f"/api/v1/items/{item.pk}/artist-mesh")
    assert got.status_code == 200 and b"".join(got.streaming_content) == glb


def test_artist_mesh_with_its_layout_and_time(project, member, next_item, submit, api):
    item = ready_item(project)
    a, artist = member("annotator"), member("artist")
    submit(a, next_item(a, project).json(), rating=1)
    glb = struct.pack("<4sII", b"glTF", 2, 24) + b"\x00" * 12

    def upload(**fields):
        f = io.BytesIO(glb)
        f.name = "mug.glb"
        return api(artist).post(f"/api/v1/items/{item.pk}/artist-mesh", {"file": f, **fields}, format="multipart")

    bad = upload(layout='{"rotation": [0, 0, 0, 0], "translation": [0, 0, -2], "scale": [1, 1, 1]}')
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_layout"
    assert upload(layout="not json").json()["error"]["code"] == "invalid_layout"
    assert upload(time_spent_ms="an hour").status_code == 400
    assert ArtistMesh.objects.count() == 0  # nothing half-written
    r = upload(layout='{"rotation": [2, 0, 0, 0], "translation": [0, 0, -2], "scale": [1, 1, 1]}',
               time_spent_ms="1800000")
    assert r.status_code == 201, r.json()
    assert r.json()["layout"]["rotation"] == [1.0, 0.0, 0.0, 0.0] and r.json()["time_spent_ms"] == 1_800_000
    mesh = ArtistMesh.objects.get()
    assert mesh.layout["translation"] == [0.0, 0.0, -2.0] and mesh.time_spent_ms == 1_800_000


def test_skip_and_flag(project, member, next_item, api):
    skipped, flagged = ready_item(project), ready_item(project)
    a, b, lead = member("annotator"), member("annotator"), member("lead")
    p = next_item(a, project).json()
    assert p["item"]["id"] == skipped.pk
    r = api(a).post(f"/api/v1/items/{skipped.pk}/skip", {"lease": p["lease"]["id"], "reason": "cannot tell"},
                    format="json")
    assert r.status_code == 200
    p = next_item(a, project).json()
    assert p["item"]["id"] == flagged.pk  # the skipped item is never offered to a again
    r = api(a).post(f"/api/v1/items/{flagged.pk}/flag", {"lease": p["lease"]["id"], "reason": "bad_mask",
                                                        "note": "cuts the handle"}, format="json")
    assert r.status_code == 200
    flagged.refresh_from_db()
    assert flagged.state == ItemState.FLAGGED
    assert next_item(b, project).json()["item"]["id"] == skipped.pk  # skip frees it for others
    bad = api(a).post(f"/api/v1/items/{flagged.pk}/flag", {"lease": p["lease"]["id"], "reason": "ugly"},
                      format="json")
    assert bad.status_code == 400
    assert api(lead).post(f"/api/v1/items/{flagged.pk}/reopen", {}, format="json").json()["state"] == "ready"


def test_correction_supersedes_the_old_judgement(project, member, next_item, submit, api):
    item = ready_item(project)
    a = member("annotator")
    payload = next_item(a, project).json()
    first = submit(a, payload, rating=4).json()
    body = judgement_body(payload, rating=1)
    body.pop("lease")
    body["supersedes"] = first["id"]
    r = api(a).post(url(payload), body, format="json")
    assert r.status_code == 201 and r.json()["supersedes"] == first["id"]
    assert Judgement.objects.get(pk=first["id"]).status == "superseded"
    item.refresh_from_db()
    assert item.state == ItemState.HARD_CASE and item.judgements_done == 1


def test_retried_skip_and_flag_store_one_record(project, member, next_item, api):
    skipped, flagged = ready_item(project), ready_item(project)
    a = member("annotator")
    lease = next_item(a, project).json()["lease"]["id"]
    for _ in range(2):  # the browser retries when the first answer is lost
        r = api(a).post(f"/api/v1/items/{skipped.pk}/skip", {"lease": lease, "reason": "cannot tell"}, format="json")
        assert r.status_code == 200
    lease = next_item(a, project).json()["lease"]["id"]
    for _ in range(2):
        r = api(a).post(f"/api/v1/items/{flagged.pk}/flag", {"lease": lease, "reason": "bad_mask"}, format="json")
        assert r.status_code == 200
    skipped.refresh_from_db()
    assert Skip.objects.filter(item=skipped).count() == 1 and skipped.skips == 1
    assert Flag.objects.filter(item=flagged).count() == 1


@pytest.mark.parametrize("change", [
    {"winner": 2**64}, {"lease": 2**64}, {"supersedes": 2**64}, {"rating": 2**64},
    {"comparisons": [{"left": 2**64, "right": 1, "outcome": "left"}]}, {"ranking": [[2**64]]},
    {"winner": 2**64, "time_spent_ms": "9000"},  # not the workbench's plain types: the serializer's path
])
def test_ids_beyond_64_bits_in_a_submission_are_refused(project, member, next_item, submit, change):
    ready_item(project)
    a = member("annotator")
    r = submit(a, next_item(a, project).json(), **change)
    assert 400 <= r.status_code < 500 and r.json()["error"]["message"], r.content[:300]
    assert Judgement.objects.count() == 0


def test_a_lease_id_beyond_64_bits_is_refused(project, member, next_item, api):
    item = ready_item(project)
    a = member("annotator")
    next_item(a, project)
    r = api(a).post(f"/api/v1/items/{item.pk}/skip", {"lease": 2**64, "reason": "x"}, format="json")
    assert r.status_code == 400 and "lease" in r.json()["error"]["details"]
    assert not Skip.objects.exists()
