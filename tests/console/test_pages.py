"""The console's pages: who sees what, and what the navigation offers."""
from __future__ import annotations

import pytest

from engine.models import ApiToken
from tests.engine.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_projects_page_lists_only_the_users_projects_with_their_roles(client, project, member):
    lead = member("lead")
    ProjectFactory(name="Someone else's")
    client.force_login(lead)
    page = client.get("/console/projects/")
    assert page.status_code == 200
    body = page.content.decode()
    assert project.name in body and "Someone else" not in body
    assert 'id="project-create"' not in body  # PROJECT_CREATORS=staff by default: a plain user may not create
    assert "Only staff users create projects" in body


def test_staff_see_the_new_project_form_with_each_setting_labelled(client, db, settings):
    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    body = client.get("/console/projects/").content.decode()
    for field in ("name", "slug", "candidates_per_item", "quality_threshold", "overlap", "gold_rate",
                  "lease_seconds", "ranking_protocol", "layout_stage"):
        assert f'<label for="id_{field}"' in body and f'id="id_{field}"' in body


def test_project_page_shows_members_to_leads_only(client, project, member):
    lead, annotator = member("lead", username="lena"), member("annotator", username="ann")
    client.force_login(lead)
    body = client.get(f"/console/projects/{project.slug}/").content.decode()
    assert 'id="member-table"' in body and 'data-username="ann"' in body and 'data-username="lena"' in body
    client.force_login(annotator)
    body = client.get(f"/console/projects/{project.slug}/").content.decode()
    assert 'id="member-table"' not in body and "Only the project's leads change its settings." in body
    assert 'id="project-settings-submit"' not in body


def test_nav_links_the_projects_areas_and_a_stranger_gets_404(client, project, member):
    client.force_login(member("lead"))
    body = client.get(f"/console/projects/{project.slug}/").content.decode()
    assert f'href="/console/projects/{project.slug}/import/"' in body
    assert f'href="/projects/{project.slug}/dashboard/"' in body
    client.force_login(UserFactory())
    assert client.get(f"/console/projects/{project.slug}/").status_code == 404
    assert client.get(f"/console/projects/{project.slug}/import/").status_code == 404


def test_import_page_needs_the_lead_role(client, project, member):
    client.force_login(member("annotator"))
    page = client.get(f"/console/projects/{project.slug}/import/")
    assert page.status_code == 403 and "needs the lead role" in page.content.decode()


def test_tokens_page_lists_the_users_tokens_never_their_keys(client, db):
    user = UserFactory()
    ApiToken.objects.create(user=user, name="training box", prefix="abcd1234", key_sha256="0" * 64)
    client.force_login(user)
    body = client.get("/console/tokens/").content.decode()
    assert "training box" in body and "abcd1234" in body and "0" * 64 not in body


def test_console_needs_a_login(client, db):
    assert client.get("/console/projects/").status_code == 302


def test_what_annotators_judge_is_set_on_the_projects_page_not_at_creation(client, project, member):
    client.force_login(member("lead"))
    body = client.get(f"/console/projects/{project.slug}/").content.decode()
    assert '<label for="id_judged_representation">What annotators judge</label>' in body
    assert '<option value="splat"' in body
    client.force_login(UserFactory(is_staff=True))
    assert "id_judged_representation" not in client.get("/console/projects/").content.decode()
