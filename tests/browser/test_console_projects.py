"""The console as a new lead uses it (issue 15, items 1, 2, 7): create a project, see the API's
validation next to the field, edit settings, manage members and roles (the last-lead rule),
create and revoke a token, and import a zip with its progress and per-file report, run by a real
Celery worker. Screenshots: tests/artifacts/console-*.png."""
from __future__ import annotations

import io
import zipfile

import pytest

from engine.models import ApiToken, Image, IngestJob, Membership, Project, Role
from tests.browser.conftest import ARTIFACTS, login
from tests.browser.workers import ingest_worker  # noqa: F401 (a fixture)
from tests.engine import builders
from tests.engine.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def test_a_lead_creates_a_project_sets_it_up_and_manages_members_and_tokens(live_server, page, frontend_built):
    UserFactory(username="lena", is_staff=True)
    UserFactory(username="ann")
    login(page, live_server, "lena", "/console/projects/")
    page.wait_for_selector("#project-create")
    shot(page, "projects-empty")

    # A wrong value: the API's message appears under its field, nothing is created.
    page.fill("#id_name", "Kitchen objects")
    page.fill("#id_overlap", "0")
    page.fill("#id_gold_rate", "1.5")
    page.click("#project-create-submit")
    page.wait_for_selector("#error_overlap:not(:empty)")
    assert "greater than or equal to 1" in page.text_content("#error_overlap")
    assert "less than or equal to 1" in page.text_content("#error_gold_rate")
    assert page.get_attribute("#id_overlap", "aria-invalid") == "true"
    shot(page, "projects-invalid")
    assert not Project.objects.exists()

    page.fill("#id_overlap", "3")
    page.fill("#id_gold_rate", "0.1")
    page.fill("#id_candidates_per_item", "6")
    page.select_option("#id_ranking_protocol", "full_ranking")
    page.check("#id_layout_stage")
    page.click("#project-create-submit")
    page.wait_for_url("**/console/projects/kitchen-objects/?created=1")
    project = Project.objects.get(slug="kitchen-objects")
    assert (project.overlap, project.gold_rate, project.candidates_per_item) == (3, 0.1, 6)
    assert project.ranking_protocol == "full_ranking" and project.layout_stage
    assert "Project created" in page.text_content("#console-flash")
    shot(page, "project-created")

    # Settings: a bad alpha is refused next to the field; a good one is saved.
    page.fill("#id_quality_threshold", "9")
    page.click("#project-settings-submit")
    page.wait_for_selector("#error_quality_threshold:not(:empty)")
    project.refresh_from_db()
    assert project.quality_threshold == 3
    page.fill("#id_quality_threshold", "4")
    page.select_option("#id_judged_representation", "splat")
    page.press("#id_quality_threshold", "Enter")
    page.wait_for_function("() => document.getElementById('console-flash').textContent.includes('Settings saved')")
    project.refresh_from_db()
    assert project.quality_threshold == 4 and project.judged_representation == "splat"

    # Members: add ann as annotator, make her a lead too, and the last-lead rule.
    page.fill("#id_member_username", "nobody")
    page.click("#member-add-submit")
    page.wait_for_selector("#member-add .form-error:not(:empty)")
    assert "No user 'nobody'" in page.text_content("#member-add .form-error")
    page.fill("#id_member_username", "ann")
    page.select_option("#id_member_role", "annotator")
    page.click("#member-add-submit")
    page.wait_for_selector('#member-table tr[data-username="ann"]')
    lead_box = '#member-table tr[data-username="lena"] input[data-role="lead"]'
    page.uncheck(lead_box)  # lena is the only lead: refused, and the box shows it
    page.wait_for_function("() => document.getElementById('console-flash').textContent.includes('last lead')")
    assert page.is_checked(lead_box)
    assert Membership.objects.filter(project=project, user__username="lena", role=Role.LEAD).exists()
    shot(page, "project-last-lead")
    page.check('#member-table tr[data-username="ann"] input[data-role="lead"]')
    page.wait_for_function("() => document.getElementById('console-flash').textContent.includes('ann is now also lead')")
    page.uncheck('#member-table tr[data-username="ann"] input[data-role="annotator"]')
    page.wait_for_function("() => document.getElementById('console-flash').textContent.includes('no longer annotator')")
    assert set(Membership.objects.filter(project=project, user__username="ann").values_list("role", flat=True)) == {
        "lead"}
    shot(page, "project-members")
    page.once("dialog", lambda d: d.accept())
    page.click('#member-table tr[data-username="ann"] button.member-remove')
    page.wait_for_selector('#member-table tr[data-username="ann"]', state="detached")
    assert not Membership.objects.filter(project=project, user__username="ann").exists()

    # Tokens: the key is shown once, works, and stops working when revoked.
    page.keyboard.press("Escape")
    page.click("#nav-tokens")
    page.wait_for_selector("#token-create")
    page.fill("#id_token_name", "training box")
    page.click("#token-create-submit")
    page.wait_for_selector("#token-created:not([hidden])")
    key = page.text_content("#token-key").strip()
    assert len(key) > 30
    shot(page, "tokens-created")
    api = page.context.request
    assert api.get(f"{live_server.url}/api/v1/projects/", headers={"Authorization": f"Token {key}"}).status == 200
    page.click('#token-table tr:has-text("training box") button.token-revoke')
    page.wait_for_function("() => document.getElementById('console-flash').textContent.includes('revoked')")
    assert ApiToken.objects.get(name="training box").revoked_at is not None
    fresh = page.context.browser.new_context()
    assert fresh.request.get(f"{live_server.url}/api/v1/projects/", headers={"Authorization": f"Token {key}"}).status == 401
    fresh.close()
    page.reload()
    assert key not in page.content()  # shown once
    shot(page, "tokens")

    # The navigation's keys: p (projects), i (import).
    page.goto(f"{live_server.url}/console/projects/{project.slug}/")
    page.keyboard.press("i")
    page.wait_for_url(f"**/console/projects/{project.slug}/import/")


def _zip_bytes(tmp_path) -> bytes:
    root = builders.write_folder(tmp_path / "src", n_images=3, width=96, height=64)
    (root / "images" / "broken.png").write_bytes(b"not a png at all")
    (root / "masks" / "broken").mkdir()
    (root / "masks" / "broken" / "cup.png").write_bytes(builders.mask_png(builders.box_mask(96, 64)))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                archive.write(p, f"kitchen/{p.relative_to(root)}")
    return buf.getvalue()


def test_a_lead_imports_a_zip_and_reads_the_report(live_server, page, frontend_built, project, tmp_path,
                                                   ingest_worker, settings):  # noqa: F811
    settings.INGEST_UPLOAD_CHUNK_BYTES = 4096  # the page sends the zip in several chunks
    lead = UserFactory(username="lena")
    Membership.objects.create(project=project, user=lead, role=Role.LEAD)
    data = _zip_bytes(tmp_path)
    assert len(data) > 3 * 4096
    login(page, live_server, "lena", f"/console/projects/{project.slug}/import/")
    page.wait_for_selector("#import-drop")
    shot(page, "import-empty")

    # A file ingest cannot read: refused before a byte is sent.
    page.set_input_files("#import-files", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hi"}])
    page.wait_for_selector("#upload-error:not(:empty)")
    assert "Ingest cannot read notes.txt" in page.text_content("#upload-error")

    page.set_input_files("#import-files", files=[{"name": "kitchen.zip", "mimeType": "application/zip", "buffer": data}])
    page.wait_for_function("() => document.getElementById('job-state').textContent === 'done'", timeout=120000)
    job = IngestJob.objects.get(project=project)
    assert job.state == "done" and job.source_name == "kitchen.zip" and job.format == "folder"
    assert Image.objects.filter(project=project).count() == 3
    assert page.text_content("#count-added") == "3" and page.text_content("#count-refused") == "1"
    assert page.get_attribute("#upload-progress", "value") == page.get_attribute("#upload-progress", "max")
    rows = page.locator("#import-report tbody tr")
    assert rows.count() == 4
    shot(page, "import-done")
    page.click('.outcome-filter[data-outcome="refused"]')
    page.wait_for_function("() => document.querySelectorAll('#import-report tbody tr').length === 1")
    assert "broken.png" in page.text_content("#import-report tbody") and "not" in page.text_content(
        "#import-report td.reason")
    shot(page, "import-refused")

    # The report stays: the job's own page, after a reload, and the list of imports.
    page.goto(f"{live_server.url}/console/projects/{project.slug}/import/{job.pk}/")
    page.wait_for_function("() => document.querySelectorAll('#import-report tbody tr').length === 4")
    assert page.locator(f'#import-jobs tr[data-job="{job.pk}"] .state').text_content() == "done"

    # The same zip again: every photo a duplicate.
    page.set_input_files("#import-files", files=[{"name": "kitchen.zip", "mimeType": "application/zip", "buffer": data}])
    page.wait_for_function("() => document.getElementById('job-state').textContent === 'done'"
                           " && document.getElementById('count-duplicate').textContent === '3'", timeout=120000)
    assert Image.objects.filter(project=project).count() == 3
    shot(page, "import-again")


def test_an_annotator_cannot_open_the_import_page(live_server, page, frontend_built, project):
    user = UserFactory(username="ann")
    Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
    login(page, live_server, "ann", f"/console/projects/{project.slug}/")
    assert page.locator("#project-settings-submit").count() == 0
    response = page.request.get(f"{live_server.url}/console/projects/{project.slug}/import/")  # the session's cookies
    assert response.status == 403 and "needs the lead role" in response.text()
    assert page.locator("#nav-import").count() == 1  # the navigation offers it; the page says why not
