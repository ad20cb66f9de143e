"""Quality control: gold accuracy, agreement, review and reject, outliers."""
import pytest

from annotation.king_of_the_hill import run_build
from annotation.models import ItemState, Judgement
from tests.annotation.factories import ready_item

pytestmark = pytest.mark.django_db


def quality(api, lead, project):
    rows = api(lead).get(f"/api/v1/projects/{project.slug}/quality").json()["annotators"]
    return {row["annotator"]: row for row in rows}


def test_gold_accuracy(project, member, next_item, submit, api):
    project.gold_rate = 1.0
    project.save()
    golds = [ready_item(project, gold=True) for _ in range(2)]
    answer = {g.pk: g.gold_candidate_id for g in golds}
    a, lead = member("annotator"), member("lead")
    # First gold: pick the answer. Second: pick something else.
    p = next_item(a, project).json()
    submit(a, p, prefer=lambda k, c: "a" if k == answer[p["item"]["id"]] else "b")
    p = next_item(a, project).json()
    submit(a, p, prefer=lambda k, c: "b" if k == answer[p["item"]["id"]] else "a")
    row = quality(api, lead, project)[a.username]
    assert row["gold"] == {"total": 2, "correct": 1, "accuracy": 0.5}
    mine = api(a).get(f"/api/v1/projects/{project.slug}/quality/me").json()
    assert mine["gold"]["accuracy"] == 0.5


def test_winner_and_pairwise_agreement(project, member, next_item, submit, api):
    project.overlap = 3
    project.gold_rate = 0
    project.save()
    ready_item(project, n=3)
    users = [member("annotator") for _ in range(3)]
    lead = member("lead")
    best = None
    for i, user in enumerate(users):
        p = next_item(user, project).json()
        ids = sorted(c["id"] for c in p["item"]["candidates"])
        best = ids[0]
        if i < 2:  # two agree: the smallest id is best
            prefer = lambda k, c: "a" if k == best or (c != best and k < c) else "b"  # noqa: E731
        else:  # the third prefers the largest id
            prefer = lambda k, c: "a" if k > c else "b"  # noqa: E731
        assert submit(user, p, prefer=prefer).status_code == 201
    rows = quality(api, lead, project)
    assert rows[users[0].username]["agreement"]["winner"] == 0.5
    assert rows[users[2].username]["agreement"]["winner"] == 0.0
    assert rows[users[0].username]["agreement"]["winner_pairs"] == 2


def test_review_reject_leaves_exports_and_reopens_the_item(project, member, next_item, submit, api):
    item = ready_item(project)
    a, b, lead = member("annotator"), member("annotator"), member("lead")
    judgement = submit(a, next_item(a, project).json()).json()
    queue = api(lead).get(f"/api/v1/projects/{project.slug}/review?annotator={a.username}").json()
    assert [j["id"] for j in queue["results"]] == [judgement["id"]]
    r = api(lead).post(f"/api/v1/judgements/{judgement['id']}/reject", {"reason": "random clicks"}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert Judgement.objects.filter(status="accepted").count() == 0  # exports filter on status
    item.refresh_from_db()
    assert item.state == ItemState.READY and item.judgements_done == 0
    assert next_item(b, project).json()["item"]["id"] == item.pk
    assert api(lead).get(f"/api/v1/projects/{project.slug}/review").json()["count"] == 0
    assert api(lead).get(f"/api/v1/projects/{project.slug}/review?status=rejected").json()["count"] == 1


def test_outlier_flags_for_fast_one_sided_voting(project, member, next_item, api):
    project.gold_rate = 0
    project.save()
    for _ in range(3):
        ready_item(project, n=8)
    a, lead = member("annotator"), member("lead")
    for _ in range(3):
        p = next_item(a, project).json()
        comps, king = run_build(p["item"], lambda m: m.left, decided_ms=120)  # always the left one, fast
        body = {"lease": p["lease"]["id"], "key": f"k{p['item']['id']}", "comparisons": comps,
                "winner": king, "rating": 4}
        assert api(a).post(f"/api/v1/items/{p['item']['id']}/judgements", body, format="json").status_code == 201
    row = quality(api, lead, project)[a.username]
    assert row["comparisons"] == 21 and row["left_share"] == 1.0
    assert set(row["outlier_flags"]) == {"too_fast", "one_side"}


def test_an_annotator_sees_only_their_own_judgements(project, member, next_item, submit, api):
    ready_item(project)
    ready_item(project)
    a, b, lead = member("annotator"), member("annotator"), member("lead")
    ja = submit(a, next_item(a, project).json()).json()
    jb = submit(b, next_item(b, project).json()).json()
    mine = api(a).get(f"/api/v1/projects/{project.slug}/judgements").json()
    assert [j["id"] for j in mine["results"]] == [ja["id"]]
    assert api(a).get(f"/api/v1/judgements/{jb['id']}").status_code == 404
    assert api(lead).get(f"/api/v1/projects/{project.slug}/judgements").json()["count"] == 2
