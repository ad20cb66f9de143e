"""Who may do what to a project's shape: create projects (PROJECT_CREATORS), keep a lead."""
from __future__ import annotations

import threading

import pytest
from django.db import connections

from engine.models import Membership, Role
from tests.engine.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


# ---------------------------------------------------------------- a project keeps a lead
def test_the_last_lead_cannot_remove_their_lead_role(api, member, project):
    lead = member(Role.LEAD)
    r = api(lead).delete(f"/api/v1/projects/{project.slug}/members/{lead.username}/lead/")
    assert r.status_code == 409 and r.json()["error"]["code"] == "last_lead"
    assert "Give another member the lead role first" in r.json()["error"]["message"]
    assert Membership.objects.filter(project=project, user=lead, role=Role.LEAD).exists()


def test_a_lead_hands_over_then_steps_down(api, member, project):
    """Changing the last lead's role is add the new lead, then remove the old role: allowed in that order."""
    lead, trainer = member(Role.LEAD), member(Role.TRAINER)
    client = api(lead)
    assert client.delete(f"/api/v1/projects/{project.slug}/members/{lead.username}/lead/").status_code == 409
    added = client.post(f"/api/v1/projects/{project.slug}/members/", {"username": trainer.username, "role": "lead"},
                        format="json")
    assert added.status_code == 201
    assert client.delete(f"/api/v1/projects/{project.slug}/members/{lead.username}/lead/").status_code == 204
    r = api(trainer).delete(f"/api/v1/projects/{project.slug}/members/{trainer.username}/lead/")
    assert r.status_code == 409 and r.json()["error"]["code"] == "last_lead"  # now the last one
    assert api(lead).get(f"/api/v1/projects/{project.slug}/").status_code == 404  # no role left: not a member


def test_other_roles_of_the_last_lead_can_go(api, member, project):
    lead = member(Role.LEAD)
    Membership.objects.create(project=project, user=lead, role=Role.ARTIST)
    assert api(lead).delete(f"/api/v1/projects/{project.slug}/members/{lead.username}/artist/").status_code == 204
    r = api(lead).delete(f"/api/v1/projects/{project.slug}/members/{UserFactory().username}/lead/")
    assert r.status_code == 404


@pytest.mark.slow
@pytest.mark.postgresql  # the race needs row locks; SQLite serialises writers anyway
@pytest.mark.django_db(transaction=True)
def test_two_leads_removing_each_other_at_once_leave_one_lead(api):
    for _attempt in range(5):
        project = ProjectFactory()
        leads = [UserFactory(), UserFactory()]
        for user in leads:
            Membership.objects.create(project=project, user=user, role=Role.LEAD)
        barrier, statuses = threading.Barrier(2), [None, None]

        def remove_the_other(i):
            try:
                barrier.wait()
                other = leads[1 - i].username
                statuses[i] = api(leads[i]).delete(f"/api/v1/projects/{project.slug}/members/{other}/lead/").status_code
            finally:
                connections.close_all()

        threads = [threading.Thread(target=remove_the_other, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(statuses) in ([204, 404], [204, 409]), statuses  # 404: the loser was removed first
        assert Membership.objects.filter(project=project, role=Role.LEAD).count() == 1


# ---------------------------------------------------------------- who creates projects
def test_only_staff_create_projects_by_default(api, settings):
    assert settings.PROJECT_CREATORS == "staff"  # the default
    r = api(UserFactory()).post("/api/v1/projects/", {"name": "Chairs"}, format="json")
    assert r.status_code == 403 and r.json()["error"]["code"] == "project_creation_restricted"
    assert "ask a site admin" in r.json()["error"]["message"]
    staff, admin = UserFactory(is_staff=True), UserFactory(is_superuser=True)
    assert api(staff).post("/api/v1/projects/", {"name": "Chairs"}, format="json").status_code == 201
    assert api(admin).post("/api/v1/projects/", {"name": "Tables"}, format="json").status_code == 201
    assert Membership.objects.filter(user=staff, project__slug="chairs", role=Role.LEAD).exists()


def test_everyone_creates_projects_when_the_setting_says_so(api, settings):
    settings.PROJECT_CREATORS = "everyone"
    user = UserFactory()
    assert api(user).post("/api/v1/projects/", {"name": "Chairs"}, format="json").status_code == 201
    assert api(user).get("/api/v1/projects/chairs/").json()["your_roles"] == ["lead"]


def test_the_demo_creates_its_project_as_the_system(settings):
    """Management commands do not ask PROJECT_CREATORS: the demo's lead is no staff user."""
    from engine.demo import DEMO_SLUG, demo_load

    assert settings.PROJECT_CREATORS == "staff"
    project, _summary, _logins = demo_load()
    assert project.slug == DEMO_SLUG
    assert Membership.objects.filter(project=project, user__username="lead", role=Role.LEAD).exists()
