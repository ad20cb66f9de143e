"""Shared fixtures: users by role, a project, API clients, storage in a temporary folder."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.engine.factories import MembershipFactory, ProjectFactory, UserFactory


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    """Every test writes files (and stages uploads) under its own temporary folder."""
    settings.MEDIA_ROOT = tmp_path / "media"  # Django's setting_changed receiver resets the storage
    settings.INGEST_UPLOAD_DIR = tmp_path / "uploads"
    yield


@pytest.fixture(autouse=True)
def _clear_cache():
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture
def project(db):
    return ProjectFactory()


@pytest.fixture
def member(project):
    """member('lead') -> a user holding that role in `project`."""

    def make(role: str, **kwargs):
        user = UserFactory(**kwargs)
        MembershipFactory(project=project, user=user, role=role)
        return user

    return make


@pytest.fixture
def api():
    """api(user) -> an APIClient authenticated as `user` (or anonymous with None)."""

    def make(user=None):
        client = APIClient()
        if user is not None:
            client.force_authenticate(user=user)
        return client

    return make
