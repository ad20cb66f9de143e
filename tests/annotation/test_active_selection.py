"""Active selection (Project.item_selection, engine.rounds.selection): under 'uncertain' the queue
offers, among items equally close to completing their overlap, those whose two best shown
candidates the pre-ranking ranker scored closest first, then items without a pre-ranking, oldest
first; both stores (the PostgreSQL statement and its ORM twin) agree; switching the setting re-keys
the project's items from their pre-rankings."""
import pytest
from django.db import transaction
from django.utils import timezone

from annotation.models import Item
from annotation.store import PortableStore, PostgresStore
from engine import services as engine_services
from engine.rounds.selection import item_selection_key_set, selection_key
from modelzoo.models import GenerationJob, GenerationJobItem
from tests.annotation.factories import ready_item

pytestmark = pytest.mark.django_db


def ranking(*scores: float, hidden: float | None = None) -> list[dict]:
    """A job item's ranking, best first: the shown candidates' scores (and one not shown)."""
    rows = [{"checkpoint": 1, "seed": k, "score": s, "rank": k + 1, "shown": "top"} for k, s in enumerate(scores)]
    if hidden is not None:
        rows.insert(0, {"checkpoint": 1, "seed": 99, "score": hidden, "rank": 1, "shown": None})
    return rows


def pre_ranked(project, item, rows):
    """The item's generation job item with its pre-ranking, as a pre-ranked job leaves it."""
    job = GenerationJob.objects.create(project=project, round=item.round, steps=4, candidates_per_item=3, pre_rank={"ranker": 1})
    GenerationJobItem.objects.create(job=job, item=item, plan=[], state=GenerationJobItem.State.DONE, ranking=rows)
    item_selection_key_set(item_id=item.pk, project=project, ranking=rows)


def test_the_key_is_the_margin_of_the_two_best_shown_candidates():
    assert selection_key(ranking(2.0, 1.5, -1.0)) == 0.5
    assert selection_key(ranking(2.0, 1.9, hidden=9.0)) == pytest.approx(0.1)  # a candidate not shown does not count
    assert selection_key(ranking(2.0)) is None
    assert selection_key([]) is None


def offered(project, annotator) -> list[int]:
    """The item each store would lease to `annotator` now (rolled back): both must agree."""
    got = []
    for store in (PostgresStore(), PortableStore()):
        with transaction.atomic():
            lease, _, _ = store.lease_take(project, annotator, [], gold_first=False, now=timezone.now(),
                                           check_due=True)
            got.append(lease and lease.item_id)
            transaction.set_rollback(True)
    return got


@pytest.mark.postgresql
def test_uncertain_first_among_equals_and_closest_to_complete_still_first(project, member):
    project.overlap, project.gold_rate = 2, 0
    project.save()
    oldest, sure, unsure, unranked = (ready_item(project, n=3) for _ in range(4))
    annotator = member("annotator")
    for item, rows in ((sure, ranking(3.0, 1.0)), (unsure, ranking(1.2, 1.1)), (oldest, ranking(2.0, 1.5))):
        pre_ranked(project, item, rows)
    assert offered(project, annotator) == [oldest.pk] * 2  # 'oldest': keys are not even written

    engine_services.project_update(project=project, item_selection="uncertain")  # re-keys from the rankings
    assert dict(Item.objects.filter(project=project).values_list("pk", "selection_key")) == {
        oldest.pk: 0.5, sure.pk: 2.0, unsure.pk: pytest.approx(0.1), unranked.pk: None}
    assert offered(project, annotator) == [unsure.pk] * 2
    Item.objects.filter(pk=unranked.pk).update(claims=1)  # one judgement in: closest to complete wins
    assert offered(project, annotator) == [unranked.pk] * 2
    Item.objects.filter(pk=unranked.pk).update(claims=0)
    Item.objects.filter(pk=unsure.pk).update(claims=2)  # full
    assert offered(project, annotator) == [oldest.pk] * 2  # the next least sure: margin 0.5 before 2.0

    engine_services.project_update(project=project, item_selection="oldest")
    assert not Item.objects.filter(project=project, selection_key__isnull=False).exists()
    assert offered(project, annotator) == [oldest.pk] * 2


def test_a_pre_ranked_item_of_an_uncertain_project_gets_its_key_when_generated(project):
    project.item_selection = "uncertain"
    project.save()
    item = ready_item(project, n=3)
    pre_ranked(project, item, ranking(0.7, 0.4))
    item.refresh_from_db()
    assert item.selection_key == pytest.approx(0.3)


def test_an_unknown_selection_is_refused_with_the_choices(project, member, api):
    lead = member("lead")
    r = api(lead).patch(f"/api/v1/projects/{project.slug}/", {"item_selection": "random"}, format="json")
    assert r.status_code == 400 and "item_selection" in r.content.decode()
    r = api(lead).patch(f"/api/v1/projects/{project.slug}/", {"item_selection": "uncertain"}, format="json")
    assert r.status_code == 200 and r.json()["item_selection"] == "uncertain"
