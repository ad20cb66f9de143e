"""The review pages and the API calls they make: the annotators' figures with outlier flags, recent
judgements, a judgement's replay data, reject and restore, gold from the replay."""
from __future__ import annotations

import pytest

from annotation.models import Item, Judgement
from tests.stats.conftest import world  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db


def test_review_page_shows_each_annotators_figures_and_their_recent_judgements(client, world):  # noqa: F811
    client.force_login(world["lead"])
    page = client.get(f"/console/projects/{world['project'].slug}/review/").content.decode()
    assert 'id="annotator-table"' in page and ">alice</a>" in page and ">bob</a>" in page
    alice_j = Judgement.objects.filter(annotator=world["alice"]).order_by("-created_at")
    # Accepted only, newest first, each with its replay link.
    assert page.index(f'data-judgement="{alice_j[0].pk}"') < page.index(f'data-judgement="{alice_j[1].pk}"')
    rejected = Judgement.objects.get(status=Judgement.Status.REJECTED)
    assert f'data-judgement="{rejected.pk}"' not in page
    page = client.get(f"/console/projects/{world['project'].slug}/review/?annotator=bob&status=rejected").content.decode()
    assert f'data-judgement="{rejected.pk}"' in page and "Restore</button>" in page
    assert page.count('data-judgement="') == 1


def test_outlier_flags_come_from_the_rollups(world):  # noqa: F811
    from engine.stats import selectors

    rows = {r["annotator"]: r for r in selectors.annotator_table(world["project"], selectors.Filters())}
    # Too few comparisons and gold answers in this world for any rule to fire.
    assert rows["alice"]["outlier_flags"] == [] and rows["alice"]["median_ms_per_comparison"] is not None
    assert selectors._outlier_flags({"comparisons": 40, "comparisons_equal": 36, "gold_total": 6, "gold_correct": 1},
                                    300) == ["too_fast", "always_equal", "low_gold_accuracy"]


def test_replay_gives_the_item_as_the_annotator_saw_it(client, world):  # noqa: F811
    j = Judgement.objects.filter(annotator=world["alice"]).order_by("created_at").first()
    client.force_login(world["lead"])
    replay = client.get(f"/api/v1/judgements/{j.pk}/replay").json()
    assert [c["id"] for c in replay["item"]["candidates"]] == j.lease.order  # the annotator's order
    assert replay["item"]["sides"] == j.lease.sides
    assert replay["item"]["candidates"][0]["checkpoint"].startswith("builtin v")
    comparisons = replay["judgement"]["comparisons"]
    assert [(c["left"], c["right"], c["outcome"], c["decided_ms"]) for c in comparisons] == [
        (c.left_id, c.right_id, c.outcome, c.decided_ms) for c in j.comparisons.order_by("index")]
    assert replay["judgement"]["winner"] == j.winner_id and replay["judgement"]["rating"] == j.rating
    assert replay["item"]["image"]["url"].endswith("/file") and replay["item"]["mask"]["rle"]["counts"]
    page = client.get(f"/console/projects/{world['project'].slug}/review/judgements/{j.pk}/")
    assert page.status_code == 200 and b'id="replay-stage"' in page.content
    # An annotator replays their own judgements only; nobody outside the project sees any.
    client.force_login(world["bob"])
    assert client.get(f"/api/v1/judgements/{j.pk}/replay").status_code == 404
    client.force_login(world["alice"])
    assert client.get(f"/api/v1/judgements/{j.pk}/replay").status_code == 200
    assert client.get(f"/console/projects/{world['project'].slug}/review/judgements/{j.pk}/").status_code == 403


def test_reject_then_restore_gives_the_item_its_slot_back_then_takes_it_again(client, world):  # noqa: F811
    j = Judgement.objects.filter(annotator=world["alice"], item=world["items"]["i4"]).get()
    item = Item.objects.get(pk=j.item_id)
    Item.objects.filter(pk=item.pk).update(judgements_done=1, claims=1)
    client.force_login(world["lead"])
    r = client.post(f"/api/v1/judgements/{j.pk}/reject", {"reason": "clicked through"}, content_type="application/json")
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    item.refresh_from_db()
    assert (item.judgements_done, item.claims) == (0, 0)
    r = client.post(f"/api/v1/judgements/{j.pk}/restore")
    assert r.status_code == 200 and r.json()["status"] == "accepted" and r.json()["review_reason"] == ""
    item.refresh_from_db()
    assert (item.judgements_done, item.claims, item.state) == (1, 1, "done")
    assert client.post(f"/api/v1/judgements/{j.pk}/restore").json()["status"] == "accepted"  # idempotent
    client.force_login(world["alice"])  # restoring is a lead's
    assert client.post(f"/api/v1/judgements/{j.pk}/restore").status_code in (403, 404)


def test_a_superseded_judgement_cannot_be_restored(client, world):  # noqa: F811
    j = Judgement.objects.filter(annotator=world["alice"]).first()
    Judgement.objects.filter(pk=j.pk).update(status=Judgement.Status.SUPERSEDED)
    client.force_login(world["lead"])
    r = client.post(f"/api/v1/judgements/{j.pk}/restore")
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_restorable"
