"""The core REST API: auth, tokens, membership and roles, upload, zip import, lists."""
from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from engine.models import Image, IngestJob, ObjectMask, Role
from tests.engine import builders
from tests.engine.imports import ImportResult
from tests.engine.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def upload(client, project, image=None, masks=None, **extra):
    data = {
        "image": SimpleUploadedFile("photo.png", image or builders.photo_bytes(), content_type="image/png"),
        "masks": masks
        if masks is not None
        else [SimpleUploadedFile("cup.png", builders.mask_png(builders.box_mask()), content_type="image/png")],
        **extra,
    }
    return client.post(f"/api/v1/projects/{project.slug}/images/", data, format="multipart")


# ---------------------------------------------------------------- authentication
def test_anonymous_requests_are_refused(api, project):
    response = api().get("/api/v1/projects/")
    assert response.status_code in (401, 403)
    assert "error" in response.json()


def test_token_lifecycle(api, member):
    user = member(Role.TRAINER)
    created = api(user).post("/api/v1/auth/tokens/", {"name": "cluster"}, format="json")
    assert created.status_code == 201
    key = created.json()["key"]
    client = APIClient(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/projects/").status_code == 200
    listed = api(user).get("/api/v1/auth/tokens/").json()
    assert [t["name"] for t in listed] == ["cluster"] and "key" not in listed[0]
    assert api(user).delete(f"/api/v1/auth/tokens/{created.json()['id']}/").status_code == 204
    refused = client.get("/api/v1/projects/")
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]


def test_a_user_cannot_revoke_someone_elses_token(api, member):
    owner, other = member(Role.TRAINER), member(Role.TRAINER)
    token_id = api(owner).post("/api/v1/auth/tokens/", {"name": "mine"}, format="json").json()["id"]
    assert api(other).delete(f"/api/v1/auth/tokens/{token_id}/").status_code == 404


def test_password_login_for_the_cli_is_throttled(api, member, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    user = member(Role.ANNOTATOR)
    for _ in range(3):
        bad = api().post("/api/v1/auth/token/", {"username": user.username, "password": "wrong"}, format="json")
        assert bad.status_code == 400
    locked = api().post("/api/v1/auth/token/", {"username": user.username, "password": "correct-horse-battery"},
                        format="json")
    assert locked.status_code == 429 and int(locked["Retry-After"]) > 0


def test_password_login_gives_a_working_token(api, member):
    user = member(Role.ANNOTATOR)
    response = api().post("/api/v1/auth/token/", {"username": user.username, "password": "correct-horse-battery"},
                          format="json")
    assert response.status_code == 201
    assert APIClient(HTTP_AUTHORIZATION=f"Token {response.json()['key']}").get("/api/v1/projects/").status_code == 200


def test_browser_login_is_throttled(client, member, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    user = member(Role.LEAD)
    for _ in range(2):
        client.post("/accounts/login/", {"username": user.username, "password": "nope"})
    response = client.post("/accounts/login/", {"username": user.username, "password": "correct-horse-battery"})
    assert response.status_code == 429 and b"Too many failed logins" in response.content
    assert int(response["Retry-After"]) > 0
    assert "_auth_user_id" not in client.session


def test_browser_login_shows_the_project_with_its_images(client, member, project):
    lead = member(Role.LEAD)
    upload(APIClient(), project)  # unauthenticated: refused, nothing stored
    assert Image.objects.count() == 0
    api_client = APIClient()
    api_client.force_authenticate(lead)
    upload(api_client, project)
    assert client.post("/accounts/login/", {"username": lead.username, "password": "correct-horse-battery"}).status_code == 302
    page = client.get(f"/projects/{project.slug}/")
    assert page.status_code == 200 and b"photo.png" in page.content and b"cup" in page.content


# ---------------------------------------------------------------- membership and roles
def test_users_see_only_their_projects(api, member, project):
    other_project = ProjectFactory()
    user = member(Role.ANNOTATOR)
    slugs = [p["slug"] for p in api(user).get("/api/v1/projects/").json()["results"]]
    assert slugs == [project.slug]
    hidden = api(user).get(f"/api/v1/projects/{other_project.slug}/")
    assert hidden.status_code == 404
    assert api(user).get(f"/api/v1/projects/{other_project.slug}/images/").status_code == 404


@pytest.mark.parametrize(
    "role, method, path, expected",
    [
        (Role.ANNOTATOR, "get", "images/", 200),
        (Role.ANNOTATOR, "post", "images/", 403),
        (Role.TRAINER, "post", "imports/", 403),
        (Role.ANNOTATOR, "get", "members/", 403),
        (Role.LEAD, "get", "members/", 200),
        (Role.ANNOTATOR, "patch", "", 403),
        (Role.LEAD, "patch", "", 200),
        (None, "get", "", 404),
    ],
)
def test_role_matrix(api, member, project, role, method, path, expected):
    user = member(role) if role else UserFactory()
    body = {"overlap": 2} if method == "patch" else {}
    response = getattr(api(user), method)(f"/api/v1/projects/{project.slug}/{path}", body, format="json")
    assert response.status_code == expected, response.content


def test_site_admin_sees_every_project(api, project):
    admin = UserFactory(is_superuser=True, is_staff=True)
    assert api(admin).get(f"/api/v1/projects/{project.slug}/").status_code == 200


def test_creating_a_project_makes_the_creator_its_lead(api):
    user = UserFactory(is_staff=True)  # PROJECT_CREATORS=staff, the default (tests/engine/test_permissions.py)
    response = api(user).post("/api/v1/projects/", {"name": "Chairs round one", "candidates_per_item": 4},
                              format="json")
    assert response.status_code == 201 and response.json()["slug"] == "chairs-round-one"
    detail = api(user).get("/api/v1/projects/chairs-round-one/").json()
    assert detail["your_roles"] == ["lead"] and detail["candidates_per_item"] == 4
    again = api(user).post("/api/v1/projects/", {"name": "Chairs round one"}, format="json")
    assert again.status_code == 409


def test_project_settings_are_validated(api, member, project):
    lead = member(Role.LEAD)
    response = api(lead).patch(f"/api/v1/projects/{project.slug}/", {"candidates_per_item": 1}, format="json")
    assert response.status_code == 400 and "candidates_per_item" in json.dumps(response.json())


def test_lead_manages_members(api, member, project):
    lead = member(Role.LEAD)
    newcomer = UserFactory()
    added = api(lead).post(f"/api/v1/projects/{project.slug}/members/",
                           {"username": newcomer.username, "role": "annotator"}, format="json")
    assert added.status_code == 201
    assert api(newcomer).get(f"/api/v1/projects/{project.slug}/").status_code == 200
    removed = api(lead).delete(f"/api/v1/projects/{project.slug}/members/{newcomer.username}/annotator/")
    assert removed.status_code == 204
    assert api(newcomer).get(f"/api/v1/projects/{project.slug}/").status_code == 404


# ---------------------------------------------------------------- upload and import
def test_upload_is_idempotent(api, member, project):
    lead = member(Role.LEAD)
    first = upload(api(lead), project)
    assert first.status_code == 201 and first.json()["masks_created"] == 1
    second = upload(api(lead), project)
    assert second.status_code == 200 and second.json()["created"] is False
    assert second.json()["masks_duplicate"] == 1
    assert ObjectMask.objects.count() == 1


def test_upload_with_coco_annotations(api, member, project):
    lead = member(Role.LEAD)
    annotations = json.dumps([{"segmentation": [[5, 5, 40, 5, 40, 30, 5, 30]], "label": "box",
                               "predicted_iou": 0.9}])
    response = upload(api(lead), project, masks=[], annotations=annotations)
    assert response.status_code == 201
    mask = ObjectMask.objects.get()
    assert mask.label == "box" and mask.provenance["predicted_iou"] == 0.9


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"image": b"not an image at all"}, "not an image"),
        ({"masks": []}, "no object masks"),
        ({"masks": [], "annotations": "{not json"}, "not valid JSON"),
        ({"masks": [], "annotations": json.dumps([{"segmentation": {"size": [48, 64], "counts": "!!"}}])},
         "alphabet"),
    ],
)
def test_bad_upload_gets_a_clear_400(api, member, project, kwargs, reason):
    lead = member(Role.LEAD)
    response = upload(api(lead), project, **kwargs)
    assert response.status_code == 400
    assert reason in response.json()["error"]["message"]
    assert Image.objects.count() == 0


def zip_of(files: dict[str, bytes]) -> SimpleUploadedFile:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return SimpleUploadedFile("import.zip", buf.getvalue(), content_type="application/zip")


def zip_post(api, lead, project, data) -> ImportResult:
    client = api(lead)
    return ImportResult(client, project, client.post(f"/api/v1/projects/{project.slug}/imports/", data,
                                                     format="multipart"))


def test_zip_import_runs_as_a_job_that_detects_the_format_and_reports_each_file(api, member, project, tmp_path):
    lead = member(Role.LEAD)
    root = builders.write_folder(tmp_path / "src", n_images=2)
    files = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    files["images/broken.png"] = b"truncated"
    files["masks/broken/x.png"] = builders.mask_png(builders.box_mask())
    client = api(lead)
    response = client.post(f"/api/v1/projects/{project.slug}/imports/", {"file": zip_of(files)}, format="multipart")
    assert response.status_code == 202 and response.json()["state"] == "preparing"
    assert Image.objects.count() == 0  # nothing in the request: the worker imports
    result = ImportResult(client, project, response)
    job = result.job
    assert job["state"] == "done" and job["format"] == "folder" and job["source_name"] == "import.zip"
    assert job["progress"]["images_imported"] == 2 and job["progress"]["masks_imported"] == 4
    assert job["report"] == {"added": 2, "duplicate": 0, "refused": 1}
    assert len(result.rejected) == 1 and "broken.png" in result.rejected[0]["reason"]
    again = zip_post(api, lead, project, {"file": zip_of(files)})
    assert again.job["report"] == {"added": 0, "duplicate": 2, "refused": 1}


def test_zip_import_of_sa1b(api, member, project, tmp_path):
    lead = member(Role.LEAD)
    root = builders.write_sa1b(tmp_path / "sa", n_images=2)
    files = {p.name: p.read_bytes() for p in root.iterdir()}
    job = zip_post(api, lead, project, {"file": zip_of(files)}).job
    assert job["format"] == "sa1b" and job["progress"]["images_imported"] == 2


@pytest.mark.parametrize(
    "upload_file, reason",
    [
        (SimpleUploadedFile("x.zip", b"PK\x03\x04 not really"), "not a valid zip"),
        (zip_of({"../evil.png": b"x"}), "escapes"),
        (zip_of({"readme.txt": b"hello"}), "Cannot tell the zip's format"),
    ],
)
def test_bad_zip_gets_a_clear_400_and_starts_no_job(api, member, project, upload_file, reason):
    lead = member(Role.LEAD)
    result = zip_post(api, lead, project, {"file": upload_file})
    assert result.status == 400 and reason in result.message
    assert not IngestJob.objects.exists()


@pytest.mark.parametrize("case", ["disk full while extracting", "format forced on the wrong layout"])
def test_a_zip_import_error_names_no_server_folder(api, member, project, settings, monkeypatch, case):
    lead = member(Role.LEAD)
    data = {"file": zip_of({"readme.txt": b"hello", "images/a.png": b"x", "masks/a/m.png": b"x"})}
    if case == "disk full while extracting":
        def extractall(self, path=None, *args, **kwargs):
            raise OSError(28, "No space left on device", f"{path}/images/a.png")

        monkeypatch.setattr(zipfile.ZipFile, "extractall", extractall)
        words = "No space left on device"
    else:
        data["file"], data["format"] = zip_of({"images/a.png": b"x", "masks/a/m.png": b"x"}), "sa1b"
        words = "no SA-1B .json files"
    message = zip_post(api, lead, project, data).message
    assert words in message
    assert "/tmp" not in message and str(settings.MEDIA_ROOT) not in message, message
    assert str(settings.INGEST_UPLOAD_DIR) not in message, message


def test_zip_bomb_is_refused_before_extraction(api, member, project, settings):
    settings.INGEST_MAX_ZIP_BYTES = 10_000
    lead = member(Role.LEAD)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:  # 50 kB of zeros in ~100 bytes
        archive.writestr("images/a.png", b"\0" * 50_000)
        archive.writestr("masks/a/m.png", b"")
    result = zip_post(api, lead, project, {"file": SimpleUploadedFile("bomb.zip", buf.getvalue())})
    assert result.status == 400 and "above the limit" in result.message


# ---------------------------------------------------------------- reading
def test_image_list_is_paginated_without_n_plus_one(api, member, project, django_assert_max_num_queries):
    lead = member(Role.LEAD)
    for seed in range(12):
        upload(api(lead), project, image=builders.photo_bytes(seed=seed))
    with django_assert_max_num_queries(6):
        page = api(lead).get(f"/api/v1/projects/{project.slug}/images/?page_size=5").json()
    assert page["count"] == 12 and len(page["results"]) == 5 and page["results"][0]["mask_count"] == 1
    with django_assert_max_num_queries(6):
        masks = api(lead).get(f"/api/v1/projects/{project.slug}/masks/?page_size=50").json()
    assert masks["count"] == 12 and masks["results"][0]["rle"]["size"] == [48, 64]


def test_files_and_mask_png_are_served_to_members(api, member, project):
    lead = member(Role.LEAD)
    image_id = upload(api(lead), project).json()["id"]
    detail = api(lead).get(f"/api/v1/projects/{project.slug}/images/{image_id}/").json()
    mask_id = detail["masks"][0]["id"]
    image = api(lead).get(f"/api/v1/projects/{project.slug}/images/{image_id}/file")
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    png = api(lead).get(f"/api/v1/projects/{project.slug}/masks/{mask_id}.png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    outsider = UserFactory()
    assert api(outsider).get(f"/api/v1/projects/{project.slug}/masks/{mask_id}.png").status_code == 404
    assert api(lead).get(f"/api/v1/projects/{project.slug}/images/{image_id}/bogus").status_code == 404


def test_openapi_schema_and_docs(api, member):
    user = member(Role.ANNOTATOR)
    schema = api(user).get("/api/v1/schema/")
    assert schema.status_code == 200 and b"/api/v1/projects/" in schema.content
    assert api(user).get("/api/v1/docs/").status_code == 200


def test_demo_command_loads_photos_masks_and_users(db):
    from django.core.management import call_command

    out = io.StringIO()
    call_command("demo", stdout=out)
    assert "Demo project 'demo': 4 images" in out.getvalue()
    assert "lead-demo-pass" in out.getvalue()
    assert ObjectMask.objects.filter(image__project__slug="demo").count() == 8
    call_command("demo", stdout=io.StringIO())
    assert ObjectMask.objects.filter(image__project__slug="demo").count() == 8
    assert MembershipFactory._meta.model.objects.filter(project__slug="demo", role=Role.ANNOTATOR).count() == 2


# ---------------------------------------------------------------- hardening: every refusal is a 4xx with the shape
def assert_refused(response, status: int, *words: str) -> dict:
    """A refusal a user can act on: the status, the error shape, and a message naming the problem."""
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) <= {"code", "message", "details"} and error["code"] and error["message"]
    for word in words:
        assert word in error["message"], error["message"]
    assert "/tmp" not in error["message"] and str(settings.MEDIA_ROOT) not in error["message"]
    return error


DEEP = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize("where", ["body", "body-nan", "body-nul", "annotations", "intrinsics"])
def test_json_nested_too_deep_or_unstorable_is_refused_wherever_it_comes(api, member, project, where):
    lead = member(Role.LEAD)
    client = api(lead)
    if where.startswith("body"):
        body = {"body": '{"name": "cli", "x": %s}' % DEEP, "body-nan": '{"name": NaN}',
                "body-nul": '{"name": "cli\\u0000"}'}[where]
        response = client.post("/api/v1/auth/tokens/", body, content_type="application/json")
        words = {"body": ["request body", "5001 levels deep"], "body-nan": ["not valid JSON", "NaN"],
                 "body-nul": ["\\u0000"]}[where]
    else:
        response = upload(client, project, masks=[], **{where: DEEP})
        words = [f"'{where}'", "5000 levels deep; at most 64"]
    assert_refused(response, 400, *words)
    assert lead.api_tokens.count() == 0 and Image.objects.count() == 0


@pytest.mark.parametrize("intrinsics, words", [
    ('[["fx", 0, 32], [0, 50, 24], [0, 0, 1]]', ["intrinsics[0][0] is 'fx', not a finite number"]),
    ('[[50, 0, 32], [0, 50], [0, 0, 1]]', ["3x3 matrix", "rows of lengths [3, 2, 3]"]),
    ('[[50, 0, 32], [0, 50, 24]]', ["3x3 matrix", "rows of lengths [3, 3]"]),
    ('[50, 0, 32, 0, 50, 24, 0, 0, 1]', ["3x3 matrix", "not a list"]),
    ('[[1e400, 0, 32], [0, 50, 24], [0, 0, 1]]', ["not a finite number"]),
    ('[[%s, 0, 32], [0, 50, 24], [0, 0, 1]]' % (10**400), ["not a finite number"]),
    ('[[true, 0, 32], [0, 50, 24], [0, 0, 1]]', ["intrinsics[0][0] is True"]),
    ('[[0, 0, 32], [0, 50, 24], [0, 0, 1]]', ["fx and fy", "must be positive"]),
    ('{"fx": 50}', ["'intrinsics' must be a JSON list"]),
])
def test_intrinsics_that_are_not_a_matrix_of_numbers_are_refused(api, member, project, intrinsics, words):
    response = upload(api(member(Role.LEAD)), project, intrinsics=intrinsics)
    assert_refused(response, 400, *words)
    assert Image.objects.count() == 0 and ObjectMask.objects.count() == 0


@pytest.mark.parametrize("image", [str(2**63), "-1", "²", "1" * 5000, "1e3", " 1"])
def test_id_filters_in_query_strings_are_range_checked(api, member, project, image):
    response = api(member(Role.LEAD)).get(f"/api/v1/projects/{project.slug}/masks/", {"image": image})
    assert_refused(response, 400, "'image' must be an integer from 1 to 9223372036854775807")


# Requests that fail outside DRF's views (or before them) answer with the same JSON under /api/.
def raw_client(**kwargs) -> Client:
    return Client(raise_request_exception=False, **kwargs)


@pytest.mark.urls("tests.engine.urls_errors")
@pytest.mark.parametrize("case", ["unknown-url", "bug", "bug-in-drf", "body-too-big-json", "body-too-big-form",
                                  "body-too-big-multipart", "body-too-big-urlencoded", "bad-multipart", "csrf",
                                  "forbidden"])
def test_every_error_under_api_has_the_error_shape(member, project, settings, monkeypatch, case):
    lead = member(Role.LEAD)
    client = raw_client(enforce_csrf_checks=case == "csrf")
    client.force_login(lead)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    big = "x" * 20_000
    if case == "unknown-url":
        expected = (client.get("/api/v1/no-such-thing/"), 404, "No API endpoint at /api/v1/no-such-thing/")
    elif case == "bug":
        expected = (client.get("/api/v1/test/boom"), 500, "The server failed on this request")
    elif case == "bug-in-drf":
        monkeypatch.setattr("engine.selectors.projects_for_user", lambda user: 1 / 0)
        expected = (client.get("/api/v1/projects/"), 500, "The server failed on this request")
    elif case == "body-too-big-json":
        expected = (client.post("/api/v1/auth/tokens/", '{"name": "%s"}' % big, content_type="application/json"),
                    400, "larger than 10,000 bytes")
    elif case == "body-too-big-form":
        expected = (client.post("/api/v1/test/plain-form", {"name": big}), 400, "larger than 10,000 bytes")
    elif case == "body-too-big-multipart":
        expected = (client.post(f"/api/v1/projects/{project.slug}/images/", {"annotations": big}), 400,
                    "larger than 10,000 bytes")
    elif case == "body-too-big-urlencoded":  # a form through DRF, as a token's client sends it (no CSRF read)
        token_client = APIClient(raise_request_exception=False)
        token_client.force_authenticate(lead)
        expected = (token_client.post("/api/v1/auth/tokens/", f"name={big}",
                                      content_type="application/x-www-form-urlencoded"), 400, "larger than 10,000 bytes")
    elif case == "bad-multipart":
        expected = (client.post(f"/api/v1/projects/{project.slug}/images/", "--x\r\nnot a part",
                                content_type="multipart/form-data; boundary=x"), 400, "")
    elif case == "csrf":
        expected = (client.post("/api/v1/test/plain-form", {"name": "cli"}), 403, "CSRF check failed")
    else:
        expected = (client.get("/api/v1/test/forbidden"), 403, "You may not do this")
    response, status, words = expected
    assert_refused(response, status, words)
    assert lead.api_tokens.count() == 0 and Image.objects.count() == 0


@pytest.mark.urls("tests.engine.urls_errors")
@pytest.mark.parametrize("path, status", [("/api/v1/no-such-thing/", 404), ("/api/v1/test/boom", 500)])
def test_with_debug_on_api_errors_still_have_the_error_shape(member, settings, path, status):
    """`make run` serves with DEBUG on, where Django would answer with its technical HTML pages."""
    settings.DEBUG = True
    client = raw_client()
    client.force_login(member(Role.LEAD))
    r = client.get(path)
    assert r.status_code == status and r["Content-Type"] == "application/json", r.content[:200]
    assert set(r.json()["error"]) >= {"code", "message"} and "Traceback" not in r.content.decode()


@pytest.mark.urls("tests.engine.urls_errors")
def test_pages_outside_the_api_keep_their_html_errors(member):
    client = raw_client(enforce_csrf_checks=True)
    assert client.get("/no-such-page/").status_code == 404
    assert client.get("/no-such-page/")["Content-Type"].startswith("text/html")
    failed = client.get("/test/boom")
    assert failed.status_code == 500 and failed["Content-Type"].startswith("text/html")
    refused = client.post("/accounts/login/", {"username": "x", "password": "y"})
    assert refused.status_code == 403 and refused["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("url", [
    "/api/v1/projects/{slug}/images/?search=cup%00",
    "/api/v1/projects/{slug}/masks/?label=%00",
    "/api/v1/projects/{slug}/judgements?annotator=bob%00",
    "/api/v1/projects/{slug}/review?annotator=bob%00&status=accepted",
    "/api/v1/projects/{slug}/members/{lead}%00/lead/",
])
def test_a_nul_character_in_the_url_is_refused_before_any_view(api, member, project, url):
    lead = member(Role.LEAD)
    client = api(lead)
    path = url.format(slug=project.slug, lead=lead.username)
    response = client.delete(path) if "/members/" in path else client.get(path)
    assert_refused(response, 400, "NUL character (%00)")
    assert project.memberships.filter(user=lead, role=Role.LEAD).exists()


def test_an_unreachable_database_is_a_503_to_retry_not_a_500(member, project, monkeypatch):
    """What clients met while PostgreSQL restarted (tests/deploy/test_faults.py): the token's
    lookup failed with OperationalError, answered as a 500 (a bug) instead of "retry later"."""
    from django.db import OperationalError

    from engine import auth
    from engine.services import token_create

    _, key = token_create(user=member(Role.ANNOTATOR), name="cli")

    def refused(*args, **kwargs):
        raise OperationalError("connection failed: connection to server at 127.0.0.1 failed: Connection refused")

    monkeypatch.setattr(auth, "token_with_user", refused)
    r = APIClient().post(f"/api/v1/projects/{project.slug}/next-item", HTTP_AUTHORIZATION=f"Token {key}")
    assert r.status_code == 503 and r["Retry-After"] == "5" and r["Content-Type"] == "application/json"
    assert r.json()["error"]["code"] == "unavailable" and "127.0.0.1" not in r.content.decode()


def test_a_page_that_meets_the_database_down_is_a_503_to_retry_not_a_500(member, project, monkeypatch):
    """Outside DRF's views too (engine.middleware.ServiceUnavailableMiddleware): a page says to
    come back, with Retry-After, in text; the same under /api/ would be the JSON error shape."""
    from django.db import OperationalError

    from engine import views

    def refused(*args, **kwargs):
        raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")

    client = Client()
    client.force_login(member(Role.LEAD))
    monkeypatch.setattr(views.selectors, "projects_for_user", refused)
    r = client.get("/")  # the project list page
    assert r.status_code == 503 and r["Retry-After"] == "5" and r["Content-Type"].startswith("text/plain")
    assert "The database is unavailable for a moment" in r.content.decode() and "127.0.0.1" not in r.content.decode()


def test_a_login_while_the_cache_is_down_is_a_503_to_retry_not_a_500(member, monkeypatch):
    """The login throttle lives in Redis (the cache): with Redis down, a login over the API and on
    the page answers 503 with Retry-After instead of a 500."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from engine import auth

    user = member(Role.ANNOTATOR)

    def down(*args, **kwargs):
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(auth.cache, "get_many", down)
    r = APIClient().post("/api/v1/auth/token/", {"username": user.username, "password": "x"}, format="json")
    assert r.status_code == 503 and r["Retry-After"] == "5", r.content
    assert r.json()["error"]["code"] == "unavailable" and "cache (Redis)" in r.json()["error"]["message"]
    page = Client().post("/accounts/login/", {"username": user.username, "password": "x"})
    assert page.status_code == 503 and "cache (Redis)" in page.content.decode()
