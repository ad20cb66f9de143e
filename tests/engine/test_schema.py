"""The OpenAPI schema says what the API does: pages, statuses, the error shape, token OR session;
and /api/v1/docs/ is served from the app (drf-spectacular-sidecar), not from a CDN."""
from __future__ import annotations

import pytest

from engine.models import Role


@pytest.fixture
def schema(api, member):
    response = api(member(Role.LEAD)).get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    return response.json()


def _op(schema, path, method):
    return schema["paths"][f"/api/v1/{path}"][method]


def test_list_endpoints_are_documented_as_pages(schema):
    for path in ["projects/", "projects/{slug}/images/", "projects/{slug}/masks/", "projects/{slug}/judgements",
                 "projects/{slug}/review", "projects/{slug}/snapshots/", "checkpoints/",
                 "projects/{slug}/generation-jobs/", "projects/{slug}/artist-queue"]:
        op = _op(schema, path, "get")
        ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        page = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
        assert set(page["required"]) == {"count", "next", "previous", "results"}, path
        assert page["properties"]["results"]["type"] == "array", path
        assert {"page", "page_size"} <= {p["name"] for p in op["parameters"]}, path
        assert op["operationId"].endswith("_list"), path


def test_statuses_and_error_shape(schema):
    assert "201" in _op(schema, "projects/", "post")["responses"]
    assert "201" in _op(schema, "auth/tokens/", "post")["responses"]
    assert "204" in _op(schema, "auth/tokens/{token_id}/", "delete")["responses"]
    assert "204" in _op(schema, "projects/{slug}/members/{username}/{role}/", "delete")["responses"]
    assert {"200", "204", "429"} <= set(_op(schema, "projects/{slug}/next-item", "post")["responses"])
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error"] and error["properties"]["error"]["required"] == ["code", "message"]
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            codes = set(op["responses"])
            if op.get("security") != [{}]:
                assert {"401", "403"} <= codes, (method, path)
            if "{" in path:
                assert "404" in codes, (method, path)
            # Any operation may meet the database or Redis restarting (engine.errors.UNAVAILABLE_SERVICES).
            assert op["responses"]["503"]["headers"]["Retry-After"]["schema"]["type"] == "integer", (method, path)
            for code in codes - {"200", "201", "202", "204", "302"}:
                assert op["responses"][code]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"}, (method, path, code)


def test_one_media_type_per_request_body(schema):
    """What a generated client sends: JSON, or multipart where the body carries a file."""
    assert list(_op(schema, "items/{item_id}/judgements", "post")["requestBody"]["content"]) == ["application/json"]
    assert list(_op(schema, "auth/token/", "post")["requestBody"]["content"]) == ["application/json"]
    assert list(_op(schema, "projects/{slug}/images/", "post")["requestBody"]["content"]) == ["multipart/form-data"]
    assert list(_op(schema, "projects/{slug}/imports/", "post")["requestBody"]["content"]) == ["multipart/form-data"]


def test_token_or_session(schema):
    assert schema["components"]["securitySchemes"]["tokenAuth"]["scheme"] == "bearer"
    assert _op(schema, "projects/", "get")["security"] == [{"tokenAuth": []}, {"cookieAuth": []}]


def test_next_item_body_is_an_object(api, member, project, schema):
    body = schema["components"]["schemas"]["NextItemInRequest"]
    assert body["type"] == "object" and body["properties"]["exclude"]["items"]["type"] == "integer"
    client = api(member(Role.ANNOTATOR))
    url = f"/api/v1/projects/{project.slug}/next-item"
    for bad in ("false", "true", "[]", "null", "0"):
        response = client.post(url, bad, content_type="application/json")
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "invalid"
    assert client.post(url, {"exclude": [1]}, format="json").status_code == 204  # no items: an empty queue
    assert client.post(url).status_code == 204  # no body at all


def test_stats_refuse_an_empty_format(api, member, project):
    client = api(member(Role.LEAD))
    assert client.get(f"/api/v1/projects/{project.slug}/stats/queue?format=").status_code == 400
    assert client.get(f"/api/v1/projects/{project.slug}/stats/queue?format=csv").status_code == 200


def test_docs_load_swagger_ui_from_the_app(api, member):
    page = api(member(Role.LEAD)).get("/api/v1/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()
