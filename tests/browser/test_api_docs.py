"""/api/v1/docs/ renders in headless Chromium with nothing but the app: Swagger UI's files come
from drf-spectacular-sidecar, and no request leaves the machine (an offline install works)."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_docs_render_the_operations_offline(live_server, page):
    outside: list[str] = []

    def only_the_app(route):
        if route.request.url.startswith(live_server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_app)
    page.goto(f"{live_server.url}/api/v1/docs/")
    page.wait_for_selector(".swagger-ui .opblock", timeout=60000)  # the schema fetched and rendered
    operations = page.locator(".swagger-ui .opblock").count()
    assert operations >= 60, operations  # every documented operation, under its tag
    assert page.locator(".swagger-ui .opblock-summary-path", has_text="/api/v1/projects/{slug}/next-item").count() == 1
    assert page.locator(".swagger-ui .auth-wrapper .authorize").count() == 1  # token or session
    assert outside == [], f"requests left the machine: {outside}"
