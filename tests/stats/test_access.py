"""Who sees what, CSV downloads, the page, worker health and /metrics."""
from __future__ import annotations

import csv
import io

import pytest

from tests.engine.factories import UserFactory

pytestmark = pytest.mark.django_db

PROJECT_FIGURES = ["throughput", "queue", "timeseries", "acceptance/rounds", "acceptance/checkpoints", "ratings",
                   "generation"]


@pytest.mark.parametrize("role", ["annotator", "trainer", "artist"])
def test_only_leads_see_annotator_level_figures(world, api, client, other_role, role):
    user = other_role(role)
    p = world["project"]
    for figure in PROJECT_FIGURES:
        assert api(user).get(f"/api/v1/projects/{p.slug}/stats/{figure}").status_code == 200, figure
    denied = api(user).get(f"/api/v1/projects/{p.slug}/stats/annotators")
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "role_required"
    by_person = api(user).get(f"/api/v1/projects/{p.slug}/stats/throughput", {"annotator": "alice"})
    assert by_person.status_code == 403
    client.force_login(user)
    page = client.get(f"/projects/{p.slug}/dashboard/")
    assert page.status_code == 200 and b"alice" not in page.content


def test_leads_and_site_admins_see_annotators(world, api):
    p = world["project"]
    admin = UserFactory(is_superuser=True)
    for user in (world["lead"], admin):
        response = api(user).get(f"/api/v1/projects/{p.slug}/stats/annotators")
        assert response.status_code == 200
        assert {r["annotator"] for r in response.json()} == {"alice", "bob"}


def test_strangers_and_anonymous_get_nothing(world, api):
    p = world["project"]
    assert api(UserFactory()).get(f"/api/v1/projects/{p.slug}/stats/throughput").status_code == 404
    assert api(None).get(f"/api/v1/projects/{p.slug}/stats/throughput").status_code in (401, 403)


def test_csv_download_of_tables(world, api):
    p, lead = world["project"], world["lead"]
    response = api(lead).get(f"/api/v1/projects/{p.slug}/stats/annotators", {"format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert f'filename="{p.slug}-annotators.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["annotator"] for r in rows] == ["alice", "bob"] and rows[1]["rejected"] == "1"
    ratings = list(csv.DictReader(io.StringIO(
        api(lead).get(f"/api/v1/projects/{p.slug}/stats/ratings", {"format": "csv"}).content.decode())))
    assert ratings[1]["checkpoint"] == "builtin:v2" and ratings[1]["vs_parent.win_rate"] == "0.625"
    for figure in PROJECT_FIGURES + ["workers"]:
        r = api(lead).get(f"/api/v1/projects/{p.slug}/stats/{figure}", {"format": "csv", "round": 1})
        assert r.status_code == 200 and r["Content-Type"].startswith("text/csv"), figure
        assert len(r.content.decode().splitlines()) >= 2, figure


def test_dashboard_page_for_a_lead(world, client):
    client.force_login(world["lead"])
    page = client.get(f"/projects/{world['project'].slug}/dashboard/", {"round": 1})
    assert page.status_code == 200
    html = page.content.decode()
    for text in ("Bradley-Terry", "alice", "<svg", "builtin:v2", "Queue depths", "Generation jobs"):
        assert text in html, text


def test_no_worker_warning(world, api):
    body = api(world["lead"]).get(f"/api/v1/projects/{world['project'].slug}/stats/workers").json()
    assert body["workers"] == [] and not body["ok"]
    assert any("No Celery worker" in w for w in body["warnings"])


def test_metrics_exposes_gauges_and_latency(world, api, client):
    slug = world["project"].slug
    api(world["lead"]).get(f"/api/v1/projects/{slug}/stats/queue")
    client.force_login(UserFactory(is_staff=True))
    text = client.get("/metrics").content.decode()
    assert f'engine_items{{project="{slug}",state="done"}} 2.0' in text
    assert f'engine_judgements{{project="{slug}",status="accepted"}} 4.0' in text
    assert f'engine_judgements{{project="{slug}",status="rejected"}} 1.0' in text
    assert 'engine_http_request_duration_seconds_bucket{le="0.3",method="GET",route="api-stats-queue"' in text \
        or 'route="api-stats-queue"' in text
    assert "engine_stats_rollup_age_seconds" in text


def test_metrics_refuse_anonymous_and_non_staff_users(world, client):
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "not_authenticated"
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    assert world["project"].slug.encode() not in anonymous.content
    client.force_login(world["lead"])  # a project's lead is not staff: /metrics names every project
    refused = client.get("/metrics")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"


def test_metrics_answer_the_scrapers_bearer_token(world, client, settings):
    slug = world["project"].slug
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 401  # no token set
    settings.METRICS_TOKEN = "s3cret-scrape-token"
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-tokem")
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "Invalid metrics token."
    assert client.get("/metrics", HTTP_AUTHORIZATION="Token s3cret-scrape-token").status_code == 401
    scraped = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
    assert scraped.status_code == 200 and f'engine_items{{project="{slug}"'.encode() in scraped.content


@pytest.mark.parametrize("figure, params, field, words", [
    ("throughput", {"until": "9999-12-31"}, "until", "Use a day from 0001-01-01 to 9999-12-30."),
    ("timeseries", {"since": "9999-12-31", "bucket": "hour"}, "since", "Use a day from 0001-01-01 to 9999-12-30."),
    ("throughput", {"until": "10000-01-01"}, "until", "Date has wrong format"),
    ("annotators", {"round": str(2**31)}, "round", "less than or equal to 2147483647"),
    ("ratings", {"round": str(2**70), "format": "csv"}, "round", "less than or equal to 2147483647"),
])
def test_days_and_numbers_out_of_range_are_refused(world, api, figure, params, field, words):
    p, lead = world["project"], world["lead"]
    r = api(lead).get(f"/api/v1/projects/{p.slug}/stats/{figure}", params)
    assert r.status_code == 400 and r["Content-Type"].startswith("application/json"), r.content[:300]
    assert words in " ".join(r.json()["error"]["details"][field])


@pytest.mark.parametrize("params, words", [
    ({"until": "9999-12-31"}, "until: Use a day from 0001-01-01 to 9999-12-30."),
    ({"since": "10000-01-01"}, "since: Date has wrong format."),
    ({"round": str(2**70)}, "round: Ensure this value is less than or equal to 2147483647."),
])
def test_the_dashboard_says_which_filter_is_out_of_range(world, client, params, words):
    client.force_login(world["lead"])
    page = client.get(f"/projects/{world['project'].slug}/dashboard/", params)
    assert page.status_code == 400 and words in page.content.decode()


@pytest.mark.parametrize("who, params, accept, status", [
    ("lead", {"format": "csv", "round": 99}, None, 404),
    ("anonymous", {"format": "csv"}, None, (401, 403)),
    ("lead", {"round": 99}, "text/html", 404),
    ("lead", {"format": "csv", "until": "9999-12-31"}, "text/csv", 400),
])
def test_errors_are_json_with_the_shape_whatever_the_format_asked(world, api, who, params, accept, status):
    client = api(world["lead"] if who == "lead" else None)
    r = client.get(f"/api/v1/projects/{world['project'].slug}/stats/throughput", params,
                   **({"HTTP_ACCEPT": accept} if accept else {}))
    assert r.status_code in (status if isinstance(status, tuple) else (status,))
    assert r["Content-Type"].startswith("application/json") and "Content-Disposition" not in r
    assert r.json()["error"]["code"] and r.json()["error"]["message"]
