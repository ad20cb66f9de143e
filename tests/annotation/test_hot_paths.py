"""The queue's hot paths (next-item, submit) beside their portable twins and the serializer:
written-out statements on PostgreSQL must answer exactly as the ORM paths and DRF would."""
import datetime as dt
import uuid

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from annotation import store
from annotation.apis import JudgementIn, judgement_in
from annotation.models import Item, ItemState, Judgement, Lease
from engine.apis import parse
from engine.services import token_create
from tests.annotation.conftest import judgement_body
from tests.annotation.factories import ready_item

pytestmark = pytest.mark.django_db

COMPS = [{"left": 1, "right": 2, "outcome": "left", "decided_ms": 900}, {"left": 3, "right": 1, "outcome": "equal"}]


@pytest.mark.parametrize("body", [
    {"lease": 7, "key": "k", "comparisons": COMPS, "ranking": None, "winner": 1, "rating": 4, "layout": None,
     "time_spent_ms": 5000},
    {"lease": 7, "key": "k", "winner": 1, "rating": 4},  # defaults
    {"key": "k", "comparisons": [], "ranking": [[1, 2], [3]], "winner": 1, "rating": 2, "supersedes": 9},
    {"lease": 7, "key": "k", "comparisons": COMPS, "winner": 1, "rating": 4,
     "layout": {"rotation": [1, 0, 0, 0], "translation": [0, 0, -1], "scale": [1, 1, 1]}},
    # Not plain: the serializer coerces or trims these, and the hand check must hand them over.
    {"lease": "7", "key": " padded ", "winner": 1.0, "rating": "4", "time_spent_ms": "12"},
    {"lease": 7, "key": "k", "comparisons": [{"left": "1", "right": 2, "outcome": "left"}], "winner": 1, "rating": 4},
])
def test_plain_submissions_are_read_as_the_serializer_reads_them(body):
    assert judgement_in(body) == dict(parse(JudgementIn, body))


@pytest.mark.parametrize("body", [
    [], "text", {"key": "k", "winner": 1}, {"lease": 7, "key": "", "winner": 1, "rating": 4},
    {"lease": 7, "key": "k" * 65, "winner": 1, "rating": 4}, {"lease": 7, "key": "k", "winner": True, "rating": 4},
    {"lease": 7, "key": "k", "winner": 1, "rating": 4, "time_spent_ms": 2**31},
    {"lease": 7, "key": "k", "winner": 1, "rating": 4, "time_spent_ms": -1},
    {"lease": 7, "key": "k", "winner": 1, "rating": 4, "comparisons": {"left": 1}},
    {"lease": 7, "key": "k", "winner": 1, "rating": 4, "comparisons": [{"left": 1, "right": 2, "outcome": "up"}]},
    {"lease": 7, "key": "k", "winner": 1, "rating": 4,
     "comparisons": [{"left": 1, "right": 2, "outcome": "left", "decided_ms": 2**40}]},
    {"lease": 7, "key": "k", "winner": 1, "rating": 4, "ranking": [[1, "a"]]},
    {"lease": 7, "key": "k\x00", "winner": 1, "rating": 4},
])
def test_malformed_submissions_fail_as_in_the_serializer(body):
    with pytest.raises(Exception) as fast:
        judgement_in(body)
    with pytest.raises(Exception) as slow:
        parse(JudgementIn, body)
    assert type(fast.value) is type(slow.value) and str(fast.value.detail) == str(slow.value.detail)


@pytest.mark.parametrize("change, status, code", [
    ({"time_spent_ms": 10**12}, 400, "invalid"),  # beyond the integer column: a 400, not a database error
    ({"rating": True}, 400, "invalid"),
    ({"comparisons": "none"}, 400, "invalid"),
    ({"lease": None}, 400, "lease_required"),
    ({"lease": 10**30}, 404, "not_found"),
    ({"lease": "abc"}, 400, "invalid"),
    ({"winner": 10**30}, 400, "invalid_candidate"),
    ({"supersedes": 10**30}, 404, "not_found"),
    ({"comparisons": [{"left": 10**30, "right": 1, "outcome": "left"}] * 3}, 400, "invalid_candidate"),
    ({"key": 5}, 201, None),  # the serializer reads a number as its text, as before
])
def test_odd_submissions_get_a_clear_answer(project, member, next_item, api, change, status, code):
    ready_item(project)
    a = member("annotator")
    payload = next_item(a, project).json()
    body = judgement_body(payload) | change
    if change == {"lease": None}:
        del body["lease"]
    r = api(a).post(f"/api/v1/items/{payload['item']['id']}/judgements", body, format="json")
    assert r.status_code == status, r.content
    if code:
        assert r.json()["error"]["code"] == code
    assert Judgement.objects.count() == (status == 201)


def test_a_form_encoded_or_listed_body_is_a_400(project, member, next_item, api):
    ready_item(project)
    a = member("annotator")
    payload = next_item(a, project).json()
    path = f"/api/v1/items/{payload['item']['id']}/judgements"
    assert api(a).post(path, [1, 2], format="json").status_code == 400
    assert api(a).post(path, {"lease": payload["lease"]["id"], "key": "k"}).status_code == 400  # multipart
    assert Judgement.objects.count() == 0


def scenario(project, member, api):
    """A round of the queue through HTTP, returning what a user or a lead would see (items by
    their place in the queue, 0 the oldest)."""
    project.overlap, project.gold_rate = 2, 0.0
    project.save()
    items = [ready_item(project, n=n) for n in (3, 4, 2)]
    place = {item.pk: k for k, item in enumerate(items)}
    a, b = member("annotator"), member("annotator")
    url = f"/api/v1/projects/{project.slug}/next-item"
    pa = api(a).post(url).json()
    qa = api(a).post(url, {"exclude": [pa["item"]["id"]]}, format="json").json()
    again = api(a).post(url).json()
    seen = [place[pa["item"]["id"]], place[qa["item"]["id"]], again["lease"]["id"] == pa["lease"]["id"],
            api(a).post(url, {"exclude": [qa["item"]["id"]]}, format="json").json()["error"]["code"]]
    body = judgement_body(pa, prefer=lambda k, c: "b", rating=2)
    first = api(a).post(f"/api/v1/items/{pa['item']['id']}/judgements", body, format="json")
    retry = api(a).post(f"/api/v1/items/{pa['item']['id']}/judgements", body, format="json")
    seen += [first.status_code, retry.status_code, first.json() == retry.json(),
             sorted(c["id"] for c in pa["item"]["candidates"]) == sorted(
                 items[0].candidates.values_list("id", flat=True))]
    pb = api(b).post(url).json()  # closest to complete first: the item a judged
    seen.append(place[pb["item"]["id"]])
    Lease.objects.filter(pk=pb["lease"]["id"]).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    late = api(b).post(f"/api/v1/items/{pb['item']['id']}/judgements", judgement_body(pb, rating=2), format="json")
    seen.append(late.status_code)  # late, but nobody took it
    seen.append(place[api(b).post(url, {"exclude": [pb["item"]["id"]]}, format="json").json()["item"]["id"]])
    item = Item.objects.get(pk=pa["item"]["id"])
    seen += [item.state, item.claims, item.judgements_done, item.hard_case,
             sorted(Lease.objects.values_list("state", flat=True)),
             [(j.rating, j.comparisons.count(), j.model_layout is not None) for j in Judgement.objects.all()]]
    return seen


EXPECTED_SCENARIO = [0, 1, True, "lease_limit", 201, 200, True, True, 0, 201, 1, ItemState.HARD_CASE, 2, 2, True,
                     ["active", "active", "submitted", "submitted"], [(2, 2, True), (2, 2, True)]]


def test_a_round_of_the_queue_through_http(project, member, api):
    """What annotators and leads see of a round, on whichever database the suite runs (the
    SQLite run of `make test` gets the portable store)."""
    assert scenario(project, member, api) == EXPECTED_SCENARIO


@pytest.mark.postgresql
def test_the_portable_store_answers_as_the_postgresql_statements(project, member, api, monkeypatch):
    """The same round through HTTP with the ORM store that SQLite gets, on PostgreSQL: the two
    stores must agree (SQLite's own locking is not what this tests)."""
    assert isinstance(store.queue_store(), store.PostgresStore)
    monkeypatch.setattr(store, "_chosen", store.PortableStore())
    assert scenario(project, member, api) == EXPECTED_SCENARIO


def test_token_authentication_on_the_queue(project, member):
    """The written-out token look-up: a live token works, a revoked one or an inactive user's does not."""
    ready_item(project)
    a = member("annotator")
    token, key = token_create(user=a, name="bench")
    client = APIClient(HTTP_AUTHORIZATION=f"Token {key}")
    payload = client.post(f"/api/v1/projects/{project.slug}/next-item").json()
    r = client.post(f"/api/v1/items/{payload['item']['id']}/judgements", judgement_body(payload), format="json")
    assert r.status_code == 201 and r.json()["annotator"] == a.username
    token.refresh_from_db()
    assert token.last_used_at is not None
    a.is_active = False
    a.save()
    assert client.post(f"/api/v1/projects/{project.slug}/next-item").status_code == 401
    a.is_active = True
    a.save()
    token.revoked_at = timezone.now()
    token.save()
    r = client.post(f"/api/v1/projects/{project.slug}/next-item")
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    assert APIClient(HTTP_AUTHORIZATION=f"Token {uuid.uuid4()}").post(
        f"/api/v1/projects/{project.slug}/next-item").status_code == 401


@pytest.mark.parametrize("path, body", [
    ("next-item", {"exclude": [10**30]}),
    ("next-item", {"exclude": [-(10**30), 5]}),
    ("next-item", {"exclude": "5"}),
    ("next-item", {"exclude": [None]}),
    ("items/{big}/judgements", None),
    ("leases/{big}/renew", {}),
])
def test_ids_beyond_the_database_range_are_4xx(project, member, api, path, body):
    ready_item(project)
    a = member("annotator")
    url = f"/api/v1/projects/{project.slug}/{path}" if path == "next-item" else "/api/v1/" + path.format(big=10**30)
    r = api(a).post(url, body if body is not None else judgement_body(
        api(a).post(f"/api/v1/projects/{project.slug}/next-item").json()), format="json")
    assert 400 <= r.status_code < 500, (r.status_code, r.content[:300])
