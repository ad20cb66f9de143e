"""Role x endpoint: who may do what. Non-members get 404 (existence does not leak)."""
import pytest

from annotation.models import Judgement
from engine.models import Membership
from tests.annotation.conftest import judgement_body
from tests.annotation.factories import ready_item
from tests.engine.factories import UserFactory

pytestmark = pytest.mark.django_db

ROLES = ["annotator", "lead", "trainer", "artist", "outsider", "anonymous"]

# endpoint -> expected status per role (a denied member gets 403, an outsider 404, anonymous 401/403).
MATRIX = {
    "next_item":      {"annotator": 200, "lead": 403, "trainer": 403, "artist": 403},
    "judgement_list": {"annotator": 200, "lead": 200, "trainer": 403, "artist": 403},
    "review":         {"annotator": 403, "lead": 200, "trainer": 403, "artist": 403},
    "quality":        {"annotator": 403, "lead": 200, "trainer": 403, "artist": 403},
    "quality_me":     {"annotator": 200, "lead": 403, "trainer": 403, "artist": 403},
    "progress":       {"annotator": 200, "lead": 200, "trainer": 200, "artist": 200},
    "artist_queue":   {"annotator": 403, "lead": 200, "trainer": 403, "artist": 200},
    "reject":         {"annotator": 403, "lead": 200, "trainer": 403, "artist": 403},
    "gold":           {"annotator": 403, "lead": 200, "trainer": 403, "artist": 403},
    "submit":         {"annotator": 404, "lead": 403, "trainer": 403, "artist": 403},
    "renew":          {"annotator": 404, "lead": 404, "trainer": 404, "artist": 404},
}


@pytest.fixture
def world(project, member, api):
    owner = member("annotator")
    item = ready_item(project)
    payload = api(owner).post(f"/api/v1/projects/{project.slug}/next-item").json()
    judgement = api(owner).post(f"/api/v1/items/{item.pk}/judgements", judgement_body(payload),
                                format="json").json()
    ready_item(project)  # something left for the next-item call
    return {"item": item, "payload": payload, "judgement": judgement}


def call(client, endpoint, project, world):
    slug, item, payload = project.slug, world["item"], world["payload"]
    if endpoint == "next_item":
        return client.post(f"/api/v1/projects/{slug}/next-item")
    if endpoint in ("judgement_list", "review", "quality", "progress", "artist_queue"):
        path = {"judgement_list": "judgements", "artist_queue": "artist-queue"}.get(endpoint, endpoint)
        return client.get(f"/api/v1/projects/{slug}/{path}")
    if endpoint == "quality_me":
        return client.get(f"/api/v1/projects/{slug}/quality/me")
    if endpoint == "reject":
        return client.post(f"/api/v1/judgements/{world['judgement']['id']}/reject", {}, format="json")
    if endpoint == "gold":
        return client.post(f"/api/v1/items/{item.pk}/gold", {"candidate": None}, format="json")
    if endpoint == "submit":  # someone else's lease: never yours
        return client.post(f"/api/v1/items/{item.pk}/judgements", judgement_body(payload), format="json")
    if endpoint == "renew":
        return client.post(f"/api/v1/leases/{payload['lease']['id']}/renew")
    raise AssertionError(endpoint)


@pytest.mark.parametrize("endpoint", sorted(MATRIX))
@pytest.mark.parametrize("role", ROLES)
def test_matrix(project, api, world, endpoint, role):
    if role == "anonymous":
        client, expected = api(None), (401, 403)
    else:
        user = UserFactory()
        if role != "outsider":
            Membership.objects.create(project=project, user=user, role=role)
        client = api(user)
        expected = (404,) if role == "outsider" else (MATRIX[endpoint][role],)
    response = call(client, endpoint, project, world)
    assert response.status_code in expected, (endpoint, role, response.status_code, response.content[:200])
    if endpoint == "submit":
        assert Judgement.objects.count() == 1
