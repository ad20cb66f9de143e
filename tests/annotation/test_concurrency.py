"""Many annotators at once, on PostgreSQL, with real threads and one DB connection each."""
import datetime as dt
import threading
import time
from collections import Counter

import pytest
from django.db import connection, connections
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.models import Item, Judgement, Lease
from engine.models import Membership
from tests.annotation.conftest import judgement_body
from tests.annotation.factories import ready_item
from tests.engine.factories import ProjectFactory, UserFactory

# PostgreSQL only: these races need row locks and SKIP LOCKED; SQLite (the laptop's database)
# serialises every writer with BEGIN IMMEDIATE, so there are no such races to test there.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.postgresql]


def run_threads(n, target):
    """Start n threads together; each gets its own connection, closed at the end."""
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def wrap(i):
        try:
            barrier.wait()
            results[i] = target(i)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return results


def client_for(user):
    client = APIClient()
    client.force_authenticate(user=user)
    return client


def project_with_annotators(n_items: int, n_annotators: int):
    """A project of overlap 2 with n_items ready items (3 candidates) and n_annotators annotators."""
    project = ProjectFactory(overlap=2, gold_rate=0)
    items = [ready_item(project, n=3) for _ in range(n_items)]
    users = [UserFactory() for _ in range(n_annotators)]
    for u in users:
        Membership.objects.create(project=project, user=u, role="annotator")
    return project, items, users


def assert_each_item_judged_by_two(results, items):
    """Every item offered to exactly two annotators (overlap 2), never twice to one, each offer
    judged, the item's counters agreeing, no annotator holding two leases on one item."""
    offered = Counter(item_id for got in results for item_id in got)
    assert sum(offered.values()) == 2 * len(items) and all(n == 2 for n in offered.values())
    assert all(len(set(got)) == len(got) for got in results)  # never twice to one annotator
    assert Judgement.objects.count() == 2 * len(items)
    for item in Item.objects.filter(pk__in=[i.pk for i in items]):
        assert item.judgements_done == 2 and item.claims == 2 and item.state == "done"
    assert Lease.objects.values("item", "annotator").distinct().count() == Lease.objects.count()


def test_many_annotators_never_exceed_overlap_nor_double_lease():
    assert connection.vendor == "postgresql"
    project, items, users = project_with_annotators(10, 24)

    def work(i):
        got = []
        client = client_for(users[i])
        for _ in range(2):  # lease, submit, lease again
            r = client.post(f"/api/v1/projects/{project.slug}/next-item")
            if r.status_code == 204:
                break
            payload = r.json()
            got.append(payload["item"]["id"])
            s = client.post(f"/api/v1/items/{payload['item']['id']}/judgements", judgement_body(payload),
                            format="json")
            assert s.status_code == 201, s.content
        return got

    assert_each_item_judged_by_two(run_threads(len(users), work), items)


def test_concurrent_duplicate_submissions_store_one_judgement():
    project = ProjectFactory(gold_rate=0)
    item = ready_item(project, n=4)
    user = UserFactory()
    Membership.objects.create(project=project, user=user, role="annotator")
    payload = client_for(user).post(f"/api/v1/projects/{project.slug}/next-item").json()
    same = judgement_body(payload, key="one-key")
    bodies = [same] * 6 + [judgement_body(payload) for _ in range(4)]  # retries, and other keys

    def work(i):
        r = client_for(user).post(f"/api/v1/items/{item.pk}/judgements", bodies[i], format="json")
        return r.status_code, (r.json().get("id") if r.status_code < 300 else r.json()["error"]["code"])

    results = run_threads(len(bodies), work)
    statuses = Counter(code for code, _ in results)
    assert statuses[201] == 1
    assert statuses[201] + statuses[200] + statuses[409] == len(bodies)
    assert len({ident for code, ident in results if code < 300}) == 1
    assert Judgement.objects.count() == 1 and Judgement.objects.get().key in ("one-key",) + tuple(
        b["key"] for b in bodies)
    item.refresh_from_db()
    assert item.judgements_done == 1 and item.claims == 1


def test_expired_lease_returns_to_the_queue_under_contention():
    project = ProjectFactory(gold_rate=0)
    item = ready_item(project, n=2)
    holder = UserFactory()
    others = [UserFactory() for _ in range(8)]
    for u in [holder, *others]:
        Membership.objects.create(project=project, user=u, role="annotator")
    client_for(holder).post(f"/api/v1/projects/{project.slug}/next-item")
    Lease.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))

    def work(i):
        return client_for(others[i]).post(f"/api/v1/projects/{project.slug}/next-item").status_code

    results = run_threads(len(others), work)
    assert sorted(results) == [200] + [204] * 7  # exactly one of them gets it
    item.refresh_from_db()
    assert item.claims == 1
    assert Lease.objects.filter(state="active").count() == 1
    assert Lease.objects.filter(state="expired", annotator=holder).count() == 1


def test_prefetching_annotators_never_exceed_overlap_nor_get_an_item_twice():
    """Each annotator holds an item and prefetches the next one (two leases), submits, prefetches..."""
    project, items, users = project_with_annotators(12, 16)
    url = f"/api/v1/projects/{project.slug}/next-item"

    def work(i):
        client, got = client_for(users[i]), []
        r = client.post(url)
        current = r.json() if r.status_code == 200 else None
        while current is not None:
            got.append(current["item"]["id"])
            r = client.post(url, {"exclude": [current["item"]["id"]]}, format="json")
            assert r.status_code in (200, 204), r.content
            nxt = r.json() if r.status_code == 200 else None
            assert nxt is None or nxt["item"]["id"] != current["item"]["id"]
            active = Lease.objects.filter(annotator=users[i], state="active").count()
            assert active <= 2
            s = client.post(f"/api/v1/items/{current['item']['id']}/judgements", judgement_body(current),
                            format="json")
            assert s.status_code == 201, s.content
            current = nxt
        return got

    assert_each_item_judged_by_two(run_threads(len(users), work), items)


def test_one_annotator_prefetching_at_once_holds_at_most_two_leases():
    project = ProjectFactory(overlap=1, gold_rate=0)
    items = [ready_item(project, n=2) for _ in range(8)]
    user = UserFactory()
    Membership.objects.create(project=project, user=user, role="annotator")
    first = client_for(user).post(f"/api/v1/projects/{project.slug}/next-item").json()

    def work(i):
        r = client_for(user).post(f"/api/v1/projects/{project.slug}/next-item",
                                  {"exclude": [first["item"]["id"]]}, format="json")
        return r.status_code, r.json()["item"]["id"] if r.status_code == 200 else r.json()["error"]["code"]

    results = run_threads(8, work)
    assert {code for code, _ in results} == {200}  # the same second lease for all eight
    assert len({item_id for _, item_id in results}) == 1
    assert Lease.objects.filter(annotator=user, state="active").count() == 2
    assert sum(Item.objects.filter(pk__in=[i.pk for i in items]).values_list("claims", flat=True)) == 2


def test_prefetch_waits_for_the_judgement_being_stored():
    """The workbench submits item A and at once prefetches with exclude=[B]: if A's judgement is
    committing at that moment, the prefetch waits for it instead of answering lease_limit."""
    project = ProjectFactory(overlap=1, gold_rate=0)
    for _ in range(3):
        ready_item(project, n=2)
    user = UserFactory()
    Membership.objects.create(project=project, user=user, role="annotator")
    url = f"/api/v1/projects/{project.slug}/next-item"
    a = client_for(user).post(url).json()
    b = client_for(user).post(url, {"exclude": [a["item"]["id"]]}, format="json").json()
    locked = threading.Event()

    def work(i):
        if i == 0:  # a submission of A in flight: its transaction holds A's lease row a while
            from django.db import transaction

            from annotation.services.leases import lease_close
            from annotation.states import item_settle

            with transaction.atomic():
                item = Item.objects.select_for_update().get(pk=a["item"]["id"])
                lease = Lease.objects.select_for_update().get(pk=a["lease"]["id"])
                locked.set()
                time.sleep(0.5)
                lease_close(lease, Lease.State.SUBMITTED, timezone.now())
                item.judgements_done += 1
                item_settle(item, project, ratings=[4])
            return None
        locked.wait(5)
        r = client_for(user).post(url, {"exclude": [b["item"]["id"]]}, format="json")
        return r.status_code, r.json()["item"]["id"] if r.status_code == 200 else r.json()

    _, (code, got) = run_threads(2, work)
    assert code == 200 and got not in (a["item"]["id"], b["item"]["id"])
