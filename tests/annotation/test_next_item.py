"""POST projects/{slug}/next-item: leases, overlap, gold, priority, expiry."""
import datetime as dt

import pytest
from django.db import transaction
from django.utils import timezone

from annotation import services
from annotation.models import Item, ItemState, Lease
from annotation.ordering import lease_order
from annotation.store import PortableStore, PostgresStore, queue_store
from annotation.tasks import leases_expire
from tests.annotation.factories import ready_item

pytestmark = pytest.mark.django_db


def test_next_item_payload_follows_the_contract(project, member, next_item):
    item = ready_item(project, n=4)
    annotator = member("annotator")
    r = next_item(annotator, project)
    assert r.status_code == 200
    body = r.json()
    assert body["lease"]["seconds"] == project.lease_seconds
    got = body["item"]
    assert got["id"] == item.pk and got["protocol"] == "king_of_the_hill" and got["layout_stage"] is False
    assert got["quality_scale"]["threshold"] == 3 and got["quality_scale"]["labels"]["5"] == "excellent"
    assert sorted(c["id"] for c in got["candidates"]) == sorted(item.candidates.values_list("id", flat=True))
    assert len(got["sides"]) == 3
    assert got["mask"]["rle"] == {"size": [48, 64], "counts": "PPYo0"}
    assert got["image"]["url"] == f"/api/v1/projects/{project.slug}/images/{item.mask.image_id}/file"
    assert got["candidates"][0]["glb_url"].startswith("/api/v1/candidates/")
    lease = Lease.objects.get(pk=body["lease"]["id"])
    assert lease.order == [c["id"] for c in got["candidates"]]  # recorded for replay
    item.refresh_from_db()
    assert item.state == ItemState.IN_PROGRESS and item.claims == 1


def test_same_lease_again_while_it_is_open(project, member, next_item):
    project.gold_rate = 0
    project.save()
    item = ready_item(project)
    ready_item(project)
    image = item.mask.image
    image.intrinsics = [[50, 0, 32], [0, 50, 24], [0, 0, 1]]
    image.thumbnail, image.depth = "thumbs/t.webp", "depth/d.npy"
    image.save()
    annotator = member("annotator")
    first = next_item(annotator, project).json()  # item and candidates read with the pick
    again = next_item(annotator, project).json()  # read back through the ORM
    assert again["lease"]["id"] == first["lease"]["id"]
    assert again["item"] == first["item"]
    assert first["item"]["image"]["intrinsics"] == image.intrinsics
    assert first["item"]["image"]["depth_url"].endswith(f"/images/{image.pk}/depth")
    assert first["item"]["image"]["thumbnail_url"].endswith(f"/images/{image.pk}/thumbnail")


def test_204_when_nothing_is_left(project, member, next_item):
    assert next_item(member("annotator"), project).status_code == 204


def test_overlap_k_and_never_twice_to_one_annotator(project, member, next_item, submit):
    project.overlap = 2
    project.save()
    item = ready_item(project)
    a, b, c = member("annotator"), member("annotator"), member("annotator")
    pa = next_item(a, project).json()
    assert submit(a, pa).status_code == 201
    assert next_item(a, project).status_code == 204  # judged already: never again
    pb = next_item(b, project).json()
    assert pb["item"]["id"] == item.pk
    assert next_item(c, project).status_code == 204  # k = 2 slots taken (one judgement, one lease)
    assert submit(b, pb).status_code == 201
    item.refresh_from_db()
    assert item.state == ItemState.DONE and item.judgements_done == 2


def test_priority_closest_to_complete_then_oldest(project, member, next_item, submit):
    project.overlap = 2
    project.gold_rate = 0
    project.save()
    older, newer = ready_item(project), ready_item(project)
    a, b = member("annotator"), member("annotator")
    pa = next_item(a, project).json()
    assert pa["item"]["id"] == older.pk  # oldest first
    submit(a, pa)
    Item.objects.filter(pk=older.pk).update(id=older.pk)  # no-op, keeps ids
    # newer is untouched; older has one judgement of two: b must get older first.
    pb = next_item(b, project).json()
    assert pb["item"]["id"] == older.pk
    assert newer.pk != older.pk


def test_gold_items_at_the_project_rate_and_looking_the_same(project, member, next_item):
    project.gold_rate = 1.0
    project.save()
    ready_item(project)
    gold = ready_item(project, gold=True)
    body = next_item(member("annotator"), project).json()
    assert body["item"]["id"] == gold.pk
    assert "gold" not in str(body)  # nothing tells the annotator
    project.gold_rate = 0.0
    project.save()
    assert next_item(member("annotator"), project).json()["item"]["id"] != gold.pk


def test_gold_items_go_to_every_annotator_beyond_overlap(project, member, next_item, submit):
    project.gold_rate = 1.0
    project.save()
    gold = ready_item(project, gold=True)
    for _ in range(3):
        user = member("annotator")
        payload = next_item(user, project).json()
        assert payload["item"]["id"] == gold.pk
        assert submit(user, payload).status_code == 201


def test_expired_lease_comes_back_at_lookup(project, member, next_item):
    item = ready_item(project)
    a, b = member("annotator"), member("annotator")
    next_item(a, project)
    assert next_item(b, project).status_code == 204
    Lease.objects.filter(item=item).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert next_item(b, project).json()["item"]["id"] == item.pk
    assert Lease.objects.get(item=item, annotator=a).state == Lease.State.EXPIRED


def test_expired_lease_freed_by_the_beat_task(project, member, next_item):
    item = ready_item(project)
    next_item(member("annotator"), project)
    Lease.objects.filter(item=item).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert leases_expire() == 1
    item.refresh_from_db()
    assert item.state == ItemState.READY and item.claims == 0
    assert leases_expire() == 0


def test_renew_and_release(project, member, next_item, api):
    item = ready_item(project)
    a, b = member("annotator"), member("annotator")
    lease_id = next_item(a, project).json()["lease"]["id"]
    Lease.objects.filter(pk=lease_id).update(expires_at=timezone.now() + dt.timedelta(seconds=5))
    r = api(a).post(f"/api/v1/leases/{lease_id}/renew")
    assert r.status_code == 200
    assert Lease.objects.get(pk=lease_id).expires_at > timezone.now() + dt.timedelta(seconds=250)
    assert api(b).post(f"/api/v1/leases/{lease_id}/renew").status_code == 404  # not b's lease
    assert api(a).post(f"/api/v1/leases/{lease_id}/release").status_code == 204
    assert api(a).post(f"/api/v1/leases/{lease_id}/release").status_code == 204  # idempotent
    item.refresh_from_db()
    assert item.state == ItemState.READY and item.claims == 0
    assert next_item(b, project).json()["item"]["id"] == item.pk
    assert next_item(a, project).status_code == 204  # released: not offered to a again
    assert api(a).post(f"/api/v1/leases/{lease_id}/renew").status_code == 409


def test_renew_after_expiry_only_if_nobody_took_it(project, member, next_item, api):
    ready_item(project)
    a, b = member("annotator"), member("annotator")
    lease_id = next_item(a, project).json()["lease"]["id"]
    Lease.objects.filter(pk=lease_id).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    leases_expire()
    assert api(a).post(f"/api/v1/leases/{lease_id}/renew").status_code == 200  # still free: back
    Lease.objects.filter(pk=lease_id).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert next_item(b, project).status_code == 200  # b takes it
    r = api(a).post(f"/api/v1/leases/{lease_id}/renew")
    assert r.status_code == 409 and r.json()["error"]["code"] == "lease_lost"


def test_waiting_and_failed_items_are_not_offered(project, member, next_item):
    ready_item(project, state=ItemState.WAITING)
    ready_item(project, state=ItemState.FAILED)
    assert next_item(member("annotator"), project).status_code == 204


def test_daily_cap(project, member, next_item, submit):
    project.daily_cap = 1
    project.save()
    ready_item(project)
    ready_item(project)
    a = member("annotator")
    assert submit(a, next_item(a, project).json()).status_code == 201
    r = next_item(a, project)
    assert r.status_code == 429 and r.json()["error"]["code"] == "daily_cap_reached"
    assert int(r["Retry-After"]) > 0


# Statements per next-item, prefetch and submission, by store. PostgreSQL: next-item is the
# project with the caller's roles, (savepoint), annotator lock, the lease statement (caller's
# leases, pick, candidates and what the payload shows, lease insert), the item's claim, (release);
# a submission the item with round, project, roles and the named lease, (savepoint), item and lease
# locked with the winner's layout, the judgement statement (judgement, comparisons, lease closed),
# the item's update, (release). Savepoints count here only; over HTTP add the token look-up, and
# BEGIN and COMMIT instead of the savepoints. The portable store (SQLite) reads and writes the same
# rows through the ORM, in more statements, none of them per candidate.
QUERY_BOUNDS = {"postgresql": (6, 6, 6), "portable": (11, 11, 11)}


def test_next_item_and_submit_use_a_bounded_number_of_queries(project, member, next_item, submit, api,
                                                              django_assert_max_num_queries):
    project.gold_rate = 0  # a gold draw that finds no gold item costs one more pick
    project.save()
    for _ in range(3):
        ready_item(project, n=8)
    a = member("annotator")
    lease, prefetch, judgement = QUERY_BOUNDS[queue_store().vendor]
    with django_assert_max_num_queries(lease):
        payload = next_item(a, project).json()
    with django_assert_max_num_queries(prefetch):
        prefetched = api(a).post(f"/api/v1/projects/{project.slug}/next-item",
                                 {"exclude": [payload["item"]["id"]]}, format="json").json()
    assert prefetched["item"]["id"] != payload["item"]["id"]
    with django_assert_max_num_queries(judgement):
        assert submit(a, payload).status_code == 201


@pytest.mark.postgresql
def test_the_portable_orm_path_leases_like_the_postgresql_statement(project, member):
    """SQLite gets the ORM twin of the lease statement: the same item from the same pool, the
    order and sides its seed gives, and the same refusals (a held lease, due leases)."""
    project.overlap = 2
    project.save()
    items = [ready_item(project, n=n) for n in (3, 5, 6)]
    Item.objects.filter(pk=items[2].pk).update(claims=1)  # closest to complete
    Item.objects.filter(pk=items[1].pk).update(claims=2)  # full
    gold = ready_item(project, n=7, gold=True)
    a, b = member("annotator"), member("annotator")
    now = timezone.now()

    def both(annotator, exclude, gold_first):
        got = []
        for store in (PostgresStore(), PortableStore()):
            with transaction.atomic():
                lease, mine, due = store.lease_take(project, annotator, exclude, gold_first=gold_first, now=now,
                                                    check_due=True)
                ids = list(Item.objects.get(pk=lease.item_id).candidates.values_list("id", flat=True)) if lease else []
                got.append((lease and lease.item_id, lease and (lease.order, lease.sides) == lease_order(
                    ids, lease.seed), lease and sorted(lease.order) == sorted(ids), mine, due))
                transaction.set_rollback(True)
        assert got[0] == got[1]
        return got[0]

    assert both(a, [], False)[:3] == (items[2].pk, True, True)
    assert both(a, [items[2].pk], False)[:3] == (items[0].pk, True, True)
    assert both(a, [], True)[:3] == (gold.pk, True, True)
    assert both(a, [gold.pk], True)[:3] == (items[2].pk, True, True)  # no other gold item: the other pool
    held = services.lease_next(project=project, annotator=a)[0]
    assert both(a, [], False) == (None, None, None, [(held.pk, held.item_id)], [])  # a holds one: no new lease
    Lease.objects.filter(pk=held.pk).update(expires_at=now - dt.timedelta(seconds=1))
    assert both(b, [], False) == (None, None, None, [], [held.item_id])  # a due lease is freed first


# ------------------------------------------------------------------ prefetch (a second lease)
def prefetch(api, user, project, exclude):
    return api(user).post(f"/api/v1/projects/{project.slug}/next-item", {"exclude": exclude}, format="json")


def test_prefetch_leases_a_second_item_and_hands_it_back_when_asked_again(project, member, next_item, api):
    project.gold_rate = 0
    project.save()
    first_item, second_item = ready_item(project), ready_item(project)
    a = member("annotator")
    shown = next_item(a, project).json()
    assert shown["item"]["id"] == first_item.pk
    r = prefetch(api, a, project, [first_item.pk])
    assert r.status_code == 200
    nxt = r.json()
    assert nxt["item"]["id"] == second_item.pk and nxt["lease"]["id"] != shown["lease"]["id"]
    assert len(nxt["item"]["candidates"]) == 4 and len(nxt["item"]["sides"]) == 3
    second_item.refresh_from_db()
    assert second_item.state == ItemState.IN_PROGRESS and second_item.claims == 1
    # A repeated prefetch gets the same second lease; without exclude the item on screen comes back.
    assert prefetch(api, a, project, [first_item.pk]).json()["lease"]["id"] == nxt["lease"]["id"]
    assert next_item(a, project).json()["lease"]["id"] == shown["lease"]["id"]
    assert api(a).post(f"/api/v1/projects/{project.slug}/next-item", {"exclude": []},
                       format="json").json()["lease"]["id"] == shown["lease"]["id"]
    assert Lease.objects.filter(annotator=a, state=Lease.State.ACTIVE).count() == 2


def test_prefetch_at_most_two_leases_and_never_the_one_being_submitted(project, member, next_item, submit, api):
    project.gold_rate = 0
    project.save()
    items = [ready_item(project) for _ in range(4)]
    a = member("annotator")
    shown = next_item(a, project).json()
    nxt = prefetch(api, a, project, [shown["item"]["id"]]).json()
    # Both held: a third lease is refused, and the older lease (whose judgement the workbench is
    # sending while it shows the prefetched item) is not handed out as the next one.
    for exclude in ([shown["item"]["id"], nxt["item"]["id"]], [nxt["item"]["id"]]):
        r = prefetch(api, a, project, exclude)
        assert r.status_code == 409 and r.json()["error"]["code"] == "lease_limit"
    assert submit(a, shown).status_code == 201
    third = prefetch(api, a, project, [nxt["item"]["id"]]).json()
    assert third["item"]["id"] not in (shown["item"]["id"], nxt["item"]["id"])
    assert [i.pk for i in items[:3]] == [shown["item"]["id"], nxt["item"]["id"], third["item"]["id"]]
    assert Lease.objects.filter(annotator=a, state=Lease.State.ACTIVE).count() == 2


def test_prefetch_204_when_only_the_held_item_is_left(project, member, next_item, api):
    item = ready_item(project)
    a = member("annotator")
    next_item(a, project)
    assert prefetch(api, a, project, [item.pk]).status_code == 204
    assert prefetch(api, a, project, [item.pk + 1000]).json()["item"]["id"] == item.pk  # not held: no exclude
    assert prefetch(api, a, project, ["x"]).status_code == 400


def test_prefetch_keeps_overlap_and_never_gives_an_item_twice(project, member, next_item, submit, api):
    project.overlap = 2
    project.gold_rate = 0
    project.save()
    x, y = ready_item(project), ready_item(project)
    a, b, c = member("annotator"), member("annotator"), member("annotator")
    pa = next_item(a, project).json()
    qa = prefetch(api, a, project, [pa["item"]["id"]]).json()
    assert {pa["item"]["id"], qa["item"]["id"]} == {x.pk, y.pk}
    pb = next_item(b, project).json()
    qb = prefetch(api, b, project, [pb["item"]["id"]]).json()
    assert {pb["item"]["id"], qb["item"]["id"]} == {x.pk, y.pk}
    assert next_item(c, project).status_code == 204  # both items hold k = 2 claims
    assert submit(a, pa).status_code == 201
    assert prefetch(api, a, project, [qa["item"]["id"]]).status_code == 204  # a saw both already
    for item in (x, y):
        item.refresh_from_db()
        assert item.claims == 2
    assert Lease.objects.values("item", "annotator").distinct().count() == Lease.objects.count() == 4


def test_prefetch_follows_priority_and_gold_rate(project, member, next_item, submit, api):
    project.overlap = 2
    project.gold_rate = 0
    project.save()
    older, newer, started = ready_item(project), ready_item(project), ready_item(project)
    Item.objects.filter(pk=started.pk).update(claims=1)  # one slot of two taken: closest to complete
    a = member("annotator")
    shown = next_item(a, project).json()
    assert shown["item"]["id"] == started.pk
    assert prefetch(api, a, project, [started.pk]).json()["item"]["id"] == older.pk
    project.gold_rate = 1.0
    project.save()
    gold = ready_item(project, gold=True)
    b = member("annotator")
    shown_b = next_item(b, project).json()
    assert shown_b["item"]["id"] == gold.pk
    # No other gold item: by priority, `older` (one claim of two, a's prefetch); `started` is full.
    assert prefetch(api, b, project, [gold.pk]).json()["item"]["id"] == older.pk
    assert prefetch(api, b, project, [gold.pk]).json()["item"]["id"] != newer.pk


def test_expired_prefetched_lease_comes_back_to_the_queue(project, member, next_item, api):
    first, second = ready_item(project), ready_item(project)
    a, b = member("annotator"), member("annotator")
    next_item(a, project)
    nxt = prefetch(api, a, project, [first.pk]).json()
    assert nxt["item"]["id"] == second.pk
    assert next_item(b, project).status_code == 204
    Lease.objects.filter(pk=nxt["lease"]["id"]).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert next_item(b, project).json()["item"]["id"] == second.pk
    assert Lease.objects.get(pk=nxt["lease"]["id"]).state == Lease.State.EXPIRED
